//! The paged KV cache (vLLM's PagedAttention idea): per layer, one pool of keys and one
//! of values, `[pages · PAGE, C]` each, shared by every generation of the model. A
//! generation holds a list of pages (its page table) for the positions it has, taken
//! as it grows; page `i` of its table holds positions `i · PAGE ..`.
//!
//! Admission promises: a generation is admitted only when the pages it may still need
//! (prompt + `max_new_tokens`) are free beyond what earlier admissions were promised,
//! so a running generation never finds the pool empty and nothing it holds is ever
//! evicted. Pages come back when the generation ends ([`SeqKv`] drops).
//!
//! **Prefix cache** (vLLM's automatic prefix caching): a full page of a prompt, once
//! its keys and values are stored, is kept under its tokens and the page before it
//! (so a page stands for the whole prefix up to its end). A later prompt that starts
//! with the same pages takes them as they are (held by both, never written again: a
//! generation writes only past them) and is prefilled from the first page it does not
//! find: a shared system prompt or the earlier turns of a conversation are computed
//! once. A cached page nobody holds still counts as available: when the free pages run
//! out, the one released longest ago is evicted, a page only after the pages cached
//! after it (so no kept page ever names a page since reused).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::gpu::{buffers, GpuContext};

/// Positions per page.
pub const PAGE: usize = 16;

/// What a cached page stands for: the page before it (`NO_PAGE` for a prompt's
/// first) and its tokens.
type PageKey = (u32, [u32; PAGE]);

const NO_PAGE: u32 = u32::MAX;

/// A page in the prefix cache.
#[derive(Debug)]
struct Cached {
    key: PageKey,
    /// Cached pages whose key names this one.
    children: u32,
    /// When nobody holds it: the release's number (its place in the eviction order).
    released: Option<u64>,
}

/// The page allocator of one pool.
#[derive(Debug, Default)]
struct Pages {
    /// Pages nobody holds and not cached, taken from the end.
    free: Vec<u32>,
    /// Pages promised to admitted generations and not yet taken.
    promised: usize,
    /// Generations holding each page.
    holders: Vec<u32>,
    /// Each page's place in the prefix cache (`None`: not cached).
    cached: Vec<Option<Cached>>,
    index: HashMap<PageKey, u32>,
    /// Cached pages nobody holds.
    unheld: usize,
    /// Of those, the ones no other cached page names, by release: evicted first.
    leaves: BTreeMap<u64, u32>,
    clock: u64,
    /// Whether full prompt pages are kept.
    caching: bool,
    /// Prompt positions taken from the cache, and prompt positions asked for.
    hit_positions: u64,
    prompt_positions: u64,
}

impl Pages {
    fn new(pages: usize, caching: bool) -> Pages {
        Pages {
            free: (0..pages as u32).rev().collect(),
            holders: vec![0; pages],
            cached: (0..pages).map(|_| None).collect(),
            caching,
            ..Pages::default()
        }
    }

    /// Pages a new promise can be made from: free ones and cached ones nobody holds.
    fn available(&self) -> usize {
        (self.free.len() + self.unheld).saturating_sub(self.promised)
    }

    /// A page to write: a free one, else the cached page released longest ago that
    /// no other cached page names (there is one whenever a cached page is unheld: a
    /// generation holding a page holds the pages before it).
    fn take(&mut self) -> Option<u32> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        let (_, p) = self.leaves.pop_first()?;
        let c = self.cached[p as usize].take()?;
        self.index.remove(&c.key);
        self.unheld -= 1;
        if c.key.0 != NO_PAGE {
            self.unchild(c.key.0);
        }
        Some(p)
    }

    /// A cached page lost a cached child: unheld and childless, it may be evicted.
    fn unchild(&mut self, p: u32) {
        if let Some(c) = self.cached[p as usize].as_mut() {
            c.children -= 1;
            if let (0, Some(at)) = (c.children, c.released) {
                self.leaves.insert(at, p);
            }
        }
    }

    /// One more generation holds page `p`.
    fn hold(&mut self, p: u32) {
        if self.holders[p as usize] == 0 {
            if let Some(c) = self.cached[p as usize].as_mut() {
                if let Some(at) = c.released.take() {
                    self.leaves.remove(&at);
                    self.unheld -= 1;
                }
            }
        }
        self.holders[p as usize] += 1;
    }

    /// One generation fewer holds page `p`: nobody left, it goes back (kept, when
    /// cached).
    fn release(&mut self, p: u32) {
        let h = &mut self.holders[p as usize];
        *h -= 1;
        if *h > 0 {
            return;
        }
        match self.cached[p as usize].as_mut() {
            Some(c) => {
                self.clock += 1;
                c.released = Some(self.clock);
                self.unheld += 1;
                if c.children == 0 {
                    self.leaves.insert(self.clock, p);
                }
            }
            None => self.free.push(p),
        }
    }

    /// The cached pages `prompt` starts with, up to `max` of them.
    fn lookup(&self, prompt: &[u32], max: usize) -> Vec<u32> {
        let mut found = Vec::new();
        let mut parent = NO_PAGE;
        for chunk in prompt.chunks_exact(PAGE).take(max) {
            let key = (parent, <[u32; PAGE]>::try_from(chunk).unwrap_or([0; PAGE]));
            match self.index.get(&key) {
                Some(&p) => {
                    found.push(p);
                    parent = p;
                }
                None => break,
            }
        }
        found
    }

    /// Keep page `p`, holding the prompt tokens `tokens` after page `parent`, unless an
    /// equal page is kept already (then it is not: whether it was is returned).
    fn keep(&mut self, p: u32, parent: u32, tokens: &[u32]) -> bool {
        let Ok(tokens) = <[u32; PAGE]>::try_from(tokens) else {
            return false;
        };
        let key = (parent, tokens);
        if self.cached[p as usize].is_some() || self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key, p);
        self.cached[p as usize] = Some(Cached {
            key,
            children: 0,
            released: None,
        });
        if parent != NO_PAGE {
            if let Some(c) = self.cached[parent as usize].as_mut() {
                c.children += 1;
            }
        }
        true
    }
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
    /// Whether full prompt pages are kept (the prefix cache is on).
    pub prefix_cache: bool,
    /// Pages in the prefix cache (held by generations or not).
    pub cached: usize,
    /// Prompt positions taken from the prefix cache, and prompt positions admitted.
    pub hit_positions: u64,
    pub prompt_positions: u64,
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
    /// Allocate `pages` pages for `n_layer` layers of width `c`, f32 or `half` floats;
    /// with `caching`, full prompt pages are kept for later prompts that start alike.
    pub fn new(
        ctx: &GpuContext,
        n_layer: usize,
        c: usize,
        pages: usize,
        half: bool,
        caching: bool,
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
            alloc: Arc::new(Mutex::new(Pages::new(pages, caching))),
        })
    }

    /// A generation that may grow to `positions` positions, or `None` when the pool
    /// cannot promise it the pages now (it waits and asks again).
    pub fn reserve(&self, positions: usize) -> Option<SeqKv> {
        self.reserve_prompt(&[], positions)
    }

    /// [`KvPool::reserve`] for a generation whose prompt is `prompt`: it starts with
    /// the cached pages the prompt begins with (all but its last token at most, which
    /// is prefilled for the first token's logits), [`SeqKv::len`] positions stored,
    /// and its own full prompt pages are kept as they are stored.
    pub fn reserve_prompt(&self, prompt: &[u32], positions: usize) -> Option<SeqKv> {
        let need = positions.div_ceil(PAGE);
        let mut a = lock(&self.alloc);
        let found = if a.caching {
            a.lookup(prompt, prompt.len().saturating_sub(1) / PAGE)
        } else {
            Vec::new()
        };
        // cached pages nobody held stop being available once held
        let taken_unheld = found
            .iter()
            .filter(|&&p| a.holders[p as usize] == 0)
            .count();
        let new = need.saturating_sub(found.len());
        if a.available() < new + taken_unheld {
            return None;
        }
        for &p in &found {
            a.hold(p);
        }
        a.promised += new;
        a.prompt_positions += prompt.len() as u64;
        a.hit_positions += (found.len() * PAGE) as u64;
        let len = found.len() * PAGE;
        let kept = found.len();
        let mut pages = found;
        pages.reserve(new);
        Some(SeqKv {
            pages,
            len,
            promised: new,
            prompt: if a.caching {
                prompt.to_vec()
            } else {
                Vec::new()
            },
            kept,
            alloc: self.alloc.clone(),
        })
    }

    /// Whether full prompt pages are kept (the prefix cache is on).
    pub fn caching(&self) -> bool {
        lock(&self.alloc).caching
    }

    /// Whether a generation of `positions` positions could ever be admitted.
    pub fn fits(&self, positions: usize) -> bool {
        positions.div_ceil(PAGE) <= self.pages
    }

    pub fn stats(&self) -> PoolStats {
        let a = lock(&self.alloc);
        PoolStats {
            pages: self.pages,
            used: self.pages - a.free.len() - a.unheld,
            available: a.available(),
            page: PAGE,
            prefix_cache: a.caching,
            cached: a.index.len(),
            hit_positions: a.hit_positions,
            prompt_positions: a.prompt_positions,
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
    /// The prompt, whose full pages are kept in the prefix cache as they are stored
    /// (empty: none are).
    prompt: Vec<u32>,
    /// Pages of the table checked for keeping.
    kept: usize,
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
                    .take()
                    .ok_or_else(|| Error::Unavailable("the KV pool lost a promised page".into()))?;
                a.hold(page);
                a.promised -= 1;
                self.promised -= 1;
                self.pages.push(page);
            }
        }
        Ok((self.len..end)
            .map(|j| self.pages[j / PAGE] * PAGE as u32 + (j % PAGE) as u32)
            .collect())
    }

    /// Count `n` more positions as stored; the prompt's pages now full are kept in
    /// the prefix cache, each after the one before it (a page whose equal is kept
    /// already is not, and neither are the pages after it).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        let full = self.len.min(self.prompt.len()) / PAGE;
        if self.kept >= full {
            return;
        }
        let mut a = lock(&self.alloc);
        while self.kept < full {
            let i = self.kept;
            let parent = if i == 0 { NO_PAGE } else { self.pages[i - 1] };
            let parent_kept = parent == NO_PAGE || a.cached[parent as usize].is_some();
            let tokens = &self.prompt[i * PAGE..(i + 1) * PAGE];
            if !parent_kept || !a.keep(self.pages[i], parent, tokens) {
                self.prompt.clear();
                return;
            }
            self.kept += 1;
        }
    }
}

impl Drop for SeqKv {
    fn drop(&mut self) {
        let mut a = lock(&self.alloc);
        a.promised -= self.promised;
        for &p in self.pages.iter().rev() {
            a.release(p);
        }
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
            alloc: Arc::new(Mutex::new(Pages::new(pages, true))),
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

    /// A prompt's pages stored: `n` positions through `slots` and `advance`.
    fn store(kv: &mut SeqKv, n: usize) {
        kv.slots(n).unwrap();
        kv.advance(n);
    }

    fn prompt(first: u32, len: usize) -> Vec<u32> {
        (0..len as u32).map(|i| first + i).collect()
    }

    #[test]
    fn a_prompt_starting_alike_takes_the_kept_pages() {
        let p = pool(8);
        let a_prompt = prompt(100, 40); // pages 0, 1 full; 8 positions in page 2
        let mut a = p.reserve_prompt(&a_prompt, 48).unwrap();
        assert_eq!(a.len(), 0, "nothing kept yet");
        store(&mut a, 20);
        assert_eq!(p.stats().cached, 1, "page 0 full and kept");
        store(&mut a, 20);
        assert_eq!(p.stats().cached, 2, "the partial third page is not kept");
        // same first 32 tokens, then different: both kept pages, held by both
        let mut b_prompt = a_prompt[..32].to_vec();
        b_prompt.extend(prompt(900, 10));
        let b = p.reserve_prompt(&b_prompt, 42).unwrap();
        assert_eq!(b.len(), 32);
        assert_eq!(b.table(), &a.table()[..2]);
        // a prompt that differs in its first page finds nothing, one that differs in
        // its second finds the first
        let mut c_prompt = a_prompt.clone();
        c_prompt[3] = 7;
        assert_eq!(p.reserve_prompt(&c_prompt, 40).unwrap().len(), 0);
        let mut d_prompt = a_prompt.clone();
        d_prompt[20] = 7;
        assert_eq!(p.reserve_prompt(&d_prompt, 40).unwrap().len(), 16);
        // a whole prompt of kept pages leaves its last token to prefill
        let e = p.reserve_prompt(&a_prompt[..32], 33).unwrap();
        assert_eq!(e.len(), 16);
        let s = p.stats();
        assert_eq!(
            (s.hit_positions, s.prompt_positions),
            (32 + 16 + 16, 40 + 42 + 40 + 40 + 32)
        );
        drop((a, b, e));
        // kept pages nobody holds stay available, and come back to a later prompt
        let s = p.stats();
        assert_eq!((s.used, s.available, s.cached), (0, 8, 2));
        assert_eq!(p.reserve_prompt(&a_prompt, 40).unwrap().len(), 32);
    }

    #[test]
    fn kept_pages_are_evicted_oldest_first_and_after_the_pages_after_them() {
        let p = pool(4);
        let x = prompt(0, 33); // 2 full pages
        let mut a = p.reserve_prompt(&x, 33).unwrap();
        store(&mut a, 33);
        drop(a);
        let y = prompt(500, 17); // 1 full page, released later than x's
        let mut b = p.reserve_prompt(&y, 17).unwrap();
        store(&mut b, 17);
        drop(b);
        assert_eq!(p.stats().cached, 3);
        assert_eq!(p.stats().available, 4);
        // 3 new pages: the free one, then x's second page (released first, the last
        // of its chain), then x's first (now a leaf), never y's
        let mut c = p.reserve_prompt(&prompt(9000, 48), 48).unwrap();
        store(&mut c, 48);
        assert_eq!(p.stats().cached, 1 + 3, "y's page and c's three");
        assert_eq!(
            p.reserve_prompt(&x, 33).map(|k| k.len()),
            None,
            "no page free"
        );
        drop(c);
        assert_eq!(p.reserve_prompt(&x, 33).unwrap().len(), 0, "x was evicted");
        assert_eq!(p.reserve_prompt(&y, 18).unwrap().len(), 16, "y was kept");
    }

    #[test]
    fn holding_kept_pages_counts_against_admission() {
        let p = pool(3);
        let x = prompt(0, 33);
        let mut a = p.reserve_prompt(&x, 33).unwrap();
        store(&mut a, 33);
        drop(a);
        assert_eq!(p.stats().available, 3);
        // holds x's 2 kept pages, promises 1 more: nothing left
        let b = p.reserve_prompt(&x, 48).unwrap();
        assert_eq!(b.len(), 32);
        assert_eq!(p.stats().available, 0);
        assert!(p.reserve(1).is_none());
        drop(b);
        // without caching nothing is kept
        let q = KvPool {
            alloc: Arc::new(Mutex::new(Pages::new(3, false))),
            ..pool(3)
        };
        let mut c = q.reserve_prompt(&x, 33).unwrap();
        store(&mut c, 33);
        drop(c);
        assert_eq!(q.stats().cached, 0);
        assert_eq!(q.reserve_prompt(&x, 33).unwrap().len(), 0);
    }
}
