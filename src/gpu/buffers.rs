//! Device buffers: creation, upload without a CPU copy kept, read-back, and
//! row-chunked tensors for matrices larger than one storage binding.

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::error::{Error, Result};

/// Usage of every tensor buffer: bound as storage, copyable both ways.
pub const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A zero-filled storage buffer of `floats` f32 (at least 4, so it can always be bound).
pub fn storage(ctx: &GpuContext, label: &str, floats: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (floats.max(4) * 4) as u64,
        usage: STORAGE,
        mapped_at_creation: false,
    })
}

/// A storage buffer holding `data`. On unified-memory adapters the buffer itself is
/// mapped and written (no staging copy); elsewhere wgpu stages the data, and the
/// caller bounds the host memory held by staging with [`flush_uploads`].
pub fn upload(ctx: &GpuContext, label: &str, data: &[f32]) -> wgpu::Buffer {
    if data.len() < 4 {
        let mut padded = data.to_vec();
        padded.resize(4, 0.0);
        return upload(ctx, label, &padded);
    }
    let direct = ctx
        .features
        .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
    if !direct {
        return ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: STORAGE,
            });
    }
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (data.len() * 4) as u64,
        usage: STORAGE | wgpu::BufferUsages::MAP_WRITE,
        mapped_at_creation: true,
    });
    match buffer.slice(..).get_mapped_range_mut() {
        Ok(mut view) => {
            view.slice(..).copy_from_slice(bytemuck::cast_slice(data));
        }
        Err(e) => tracing::error!(error = %e, label, "mapping a new buffer failed"),
    }
    buffer.unmap();
    buffer
}

/// Let wgpu finish the pending uploads and free their staging memory.
pub fn flush_uploads(ctx: &GpuContext) -> Result<()> {
    ctx.queue.submit([]);
    ctx.wait_idle()
}

/// A uniform buffer sized for `T`, written before each dispatch that uses it.
pub fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: std::mem::size_of::<T>().max(16) as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Copy `len` floats starting at float `offset` of `src` back to the host.
/// Submits its own copy and waits: use after the forward's submission.
pub fn read_floats(
    ctx: &GpuContext,
    src: &wgpu::Buffer,
    offset: usize,
    len: usize,
) -> Result<Vec<f32>> {
    read_many(ctx, &[(src, offset, len)]).map(|mut v| v.remove(0))
}

/// Read several ranges in one submission: `(buffer, float offset, float count)`.
pub fn read_many(
    ctx: &GpuContext,
    ranges: &[(&wgpu::Buffer, usize, usize)],
) -> Result<Vec<Vec<f32>>> {
    let total: usize = ranges.iter().map(|r| r.2).sum();
    if total == 0 {
        return Ok(ranges.iter().map(|_| Vec::new()).collect());
    }
    let staging = staging(ctx, "readback", total);
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
    let mut at = 0u64;
    for (buf, off, len) in ranges {
        if *len > 0 {
            enc.copy_buffer_to_buffer(buf, (*off * 4) as u64, &staging, at, (*len * 4) as u64);
        }
        at += (*len * 4) as u64;
    }
    ctx.queue.submit([enc.finish()]);
    let all = map_read(ctx, &staging, total, None)?;
    let mut out = Vec::with_capacity(ranges.len());
    let mut at = 0;
    for (_, _, len) in ranges {
        out.push(all[at..at + len].to_vec());
        at += len;
    }
    Ok(out)
}

/// A host-readable buffer that copies land in before [`map_read`].
pub fn staging(ctx: &GpuContext, label: &str, floats: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (floats.max(4) * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Wait for submission `index` (`None`: the whole queue), map the first `floats` of a
/// staging buffer, copy them out, unmap.
pub fn map_read(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    floats: usize,
    index: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<f32>> {
    map_after(ctx, staging, (floats.max(1) * 4) as u64, index, |bytes| {
        bytemuck::cast_slice::<u8, f32>(bytes)[..floats].to_vec()
    })
}

/// Map the first `bytes` of mappable `staging` (after the work submitted so far) and
/// return `f` of them.
pub fn map_with<T>(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    map_after(ctx, staging, bytes, None, f)
}

/// [`map_with`] after submission `index` only (`None`: all work submitted so far): the
/// work submitted after it may still be running.
pub fn map_after<T>(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    index: Option<wgpu::SubmissionIndex>,
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    let err = |m: String| Error::Gpu {
        context: "readback".into(),
        message: m,
    };
    let slice = staging.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait_for(index)?;
    rx.recv()
        .map_err(|_| err("map callback dropped".into()))?
        .map_err(|e| err(e.to_string()))?;
    let view = slice.get_mapped_range().map_err(|e| err(e.to_string()))?;
    let out = f(&view);
    drop(view);
    staging.unmap();
    Ok(out)
}

/// One bound window of a [`RowChunked`] matrix: rows `[row_start, row_start + rows)`.
pub struct Chunk {
    pub buffer: wgpu::Buffer,
    pub row_start: usize,
    pub rows: usize,
}

/// A row-major `[rows, cols]` matrix stored as one or more buffers, each small enough
/// to be bound as a whole (`max_storage_buffer_binding_size`). Kernels run once per chunk.
pub struct RowChunked {
    pub rows: usize,
    pub cols: usize,
    pub chunks: Vec<Chunk>,
}

/// How many rows of `cols` floats one binding may hold, rounded down to a multiple of 4,
/// also fitting `extra_cols_per_row` floats per row of a companion buffer.
pub fn rows_per_binding(max_binding_bytes: u64, bytes_per_row: u64) -> usize {
    let rows = (max_binding_bytes / bytes_per_row.max(1)) as usize;
    (rows / 4 * 4).max(4)
}

impl RowChunked {
    /// Allocate zero-filled chunks of at most `rows_per_chunk` rows.
    pub fn zeros(
        ctx: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        rows_per_chunk: usize,
    ) -> Self {
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < rows {
            let n = rows_per_chunk.min(rows - start);
            chunks.push(Chunk {
                buffer: storage(ctx, &format!("{label}[{start}..{}]", start + n), n * cols),
                row_start: start,
                rows: n,
            });
            start += n;
        }
        RowChunked { rows, cols, chunks }
    }

    /// Upload `data`, `words_per_row` words per stored row, of which the first `rows` rows
    /// are real and the rest padding up to a multiple of `rows_per_chunk`'s granularity:
    /// chunks of `rows_per_chunk` rows, the last one holding the remaining real rows
    /// (its `rows`) and the padding after them (in its buffer).
    pub fn upload_padded(
        ctx: &GpuContext,
        label: &str,
        data: &[f32],
        words_per_row: usize,
        rows: usize,
        rows_per_chunk: usize,
    ) -> Self {
        let stored_rows = data.len() / words_per_row;
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < rows {
            let n = rows_per_chunk.min(rows - start);
            let end = (start + rows_per_chunk).min(stored_rows);
            chunks.push(Chunk {
                buffer: upload(
                    ctx,
                    &format!("{label}[{start}..{}]", start + n),
                    &data[start * words_per_row..end * words_per_row],
                ),
                row_start: start,
                rows: n,
            });
            start += n;
        }
        RowChunked {
            rows,
            cols: words_per_row,
            chunks,
        }
    }

    /// Bytes held on the device.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.buffer.size()).sum()
    }
}
