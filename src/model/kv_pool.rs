//! The paged KV cache (vLLM's PagedAttention idea): per layer, one pool of keys and one
//! of values, `[pages · PAGE, C]` each, shared by every generation of the model. A
//! generation holds a list of pages (its page table) for the positions it has, taken
//! as it grows; page `i` of its table holds positions `i · PAGE ..`.
//!
//! Admission promises: a generation is admitted only when the pages it may still need
//! (prompt + `max_new_tokens`) are free beyond what earlier admissions were promised,
//! so a running generation never finds the pool empty and nothing is ever evicted.
//! Pages come back when the generation ends ([`SeqKv`] drops).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::gpu::{buffers, GpuContext};

/// Positions per page.
pub const PAGE: usize = 16;

/// The page allocator of one pool.
#[derive(Debug)]
struct Pages {
    /// Pages nobody holds, taken from the end.
    free: Vec<u32>,
    /// Pages promised to admitted generations and not yet taken.
    promised: usize,
}

/// Pool figures for `/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub pages: usize,
    /// Pages holding some generation's keys and values.
    pub used: usize,
    /// Pages free and not promised: what a new generation can be admitted with.
    pub available: usize,
    /// Positions per page.
    pub page: usize,
    /// Device bytes of the pool (all layers, keys and values).
    pub bytes: u64,
    /// Keys and values stored as half floats.
    pub half: bool,
}

/// The keys and values of every layer, in pages.
pub struct KvPool {
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    pub pages: usize,
    /// Keys and values stored as half floats (`kv_cache_dtype`).
    pub half: bool,
    /// Bytes of one page across layers, keys and values.
    pub page_bytes: u64,
    alloc: Arc<Mutex<Pages>>,
}

/// Bytes of one page of `n_layer` layers of width `c` (the key heads' width; keys and
/// values, f32 or `half` floats).
pub fn page_bytes(n_layer: usize, c: usize, half: bool) -> u64 {
    (2 * n_layer * PAGE * c * if half { 2 } else { 4 }) as u64
}

fn lock(m: &Mutex<Pages>) -> MutexGuard<'_, Pages> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl KvPool {
    /// Allocate `pages` pages for `n_layer` layers of width `c`, f32 or `half` floats.
    pub fn new(
        ctx: &GpuContext,
        n_layer: usize,
        c: usize,
        pages: usize,
        half: bool,
    ) -> Result<KvPool> {
        // each layer's pool is one binding: at most as many pages as one holds
        let page = page_bytes(1, c, half) / 2;
        let per_binding = (ctx.max_binding_bytes() / page) as usize;
        if per_binding == 0 {
            return Err(Error::Config(format!(
                "one KV page ({PAGE} positions of width {c}) exceeds the adapter's binding limit ({} bytes)",
                ctx.max_binding_bytes()
            )));
        }
        if pages > per_binding {
            tracing::warn!(
                pages,
                per_binding,
                "the KV pool is limited to what one binding per layer holds"
            );
        }
        let pages = pages.clamp(1, per_binding);
        // f32s (or pairs of half floats), whole vec4s
        let floats = (pages * PAGE * c).div_ceil(if half { 8 } else { 4 }) * 4;
        let k = (0..n_layer)
            .map(|l| buffers::storage(ctx, &format!("k_pool[{l}]"), floats))
            .collect();
        let v = (0..n_layer)
            .map(|l| buffers::storage(ctx, &format!("v_pool[{l}]"), floats))
            .collect();
        Ok(KvPool {
            k,
            v,
            pages,
            half,
            page_bytes: page_bytes(n_layer, c, half),
            alloc: Arc::new(Mutex::new(Pages {
                free: (0..pages as u32).rev().collect(),
                promised: 0,
            })),
        })
    }

    /// A generation that may grow to `positions` positions, or `None` when the pool
    /// cannot promise it the pages now (it waits and asks again).
    pub fn reserve(&self, positions: usize) -> Option<SeqKv> {
        let need = positions.div_ceil(PAGE);
        let mut a = lock(&self.alloc);
        if a.free.len() < a.promised + need {
            return None;
        }
        a.promised += need;
        Some(SeqKv {
            pages: Vec::with_capacity(need),
            len: 0,
            promised: need,
            alloc: self.alloc.clone(),
        })
    }

    /// Whether a generation of `positions` positions could ever be admitted.
    pub fn fits(&self, positions: usize) -> bool {
        positions.div_ceil(PAGE) <= self.pages
    }

    pub fn stats(&self) -> PoolStats {
        let a = lock(&self.alloc);
        PoolStats {
            pages: self.pages,
            used: self.pages - a.free.len(),
            available: a.free.len().saturating_sub(a.promised),
            page: PAGE,
            bytes: self.pages as u64 * self.page_bytes,
            half: self.half,
        }
    }
}

/// One generation's pages. Dropping it returns them (and what was promised) to the pool.
#[derive(Debug)]
pub struct SeqKv {
    pages: Vec<u32>,
    /// Positions whose keys and values are stored.
    len: usize,
    /// Pages promised and not yet taken.
    promised: usize,
    alloc: Arc<Mutex<Pages>>,
}

impl SeqKv {
    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The page table.
    pub fn table(&self) -> &[u32] {
        &self.pages
    }

    /// Positions this generation may still grow by.
    pub fn room(&self) -> usize {
        (self.pages.len() + self.promised) * PAGE - self.len
    }

    /// Take pages for `n` more positions and return the pool rows they go to; the
    /// positions count as stored once the step that writes them has run
    /// ([`SeqKv::advance`]).
    pub fn slots(&mut self, n: usize) -> Result<Vec<u32>> {
        if n > self.room() {
            return Err(Error::SequenceTooLong {
                len: self.len + n,
                max: self.len + self.room(),
            });
        }
        let end = self.len + n;
        let want = end.div_ceil(PAGE);
        if want > self.pages.len() {
            let mut a = lock(&self.alloc);
            while self.pages.len() < want {
                // promised pages are always there (admission kept them back)
                let page = a
                    .free
                    .pop()
                    .ok_or_else(|| Error::Unavailable("the KV pool lost a promised page".into()))?;
                a.promised -= 1;
                self.promised -= 1;
                self.pages.push(page);
            }
        }
        Ok((self.len..end)
            .map(|j| self.pages[j / PAGE] * PAGE as u32 + (j % PAGE) as u32)
            .collect())
    }

    /// Count `n` more positions as stored.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

impl Drop for SeqKv {
    fn drop(&mut self) {
        let mut a = lock(&self.alloc);
        a.promised -= self.promised;
        a.free.append(&mut self.pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(pages: usize) -> KvPool {
        KvPool {
            k: Vec::new(),
            v: Vec::new(),
            pages,
            half: false,
            page_bytes: 1,
            alloc: Arc::new(Mutex::new(Pages {
                free: (0..pages as u32).rev().collect(),
                promised: 0,
            })),
        }
    }

    #[test]
    fn admission_promises_pages_and_drops_return_them() {
        let p = pool(4);
        let mut a = p.reserve(40).unwrap(); // 3 pages promised
        assert_eq!(p.stats().available, 1);
        assert!(p.reserve(17).is_none(), "2 pages are not available");
        let s = a.slots(17).unwrap();
        a.advance(17);
        assert_eq!(s.len(), 17);
        assert_eq!(s[16], a.table()[1] * PAGE as u32);
        assert_eq!(p.stats().used, 2);
        assert_eq!(p.stats().available, 1);
        // past what was promised: refused, nothing taken
        assert!(a.slots(40).is_err());
        let b = p.reserve(16).unwrap();
        assert_eq!(p.stats().available, 0);
        drop(a);
        assert_eq!(p.stats().used, 0);
        assert_eq!(p.stats().available, 3);
        drop(b);
        assert_eq!(p.stats().available, 4);
        assert!(p.fits(64) && !p.fits(65));
    }
}
