//! What a projection does besides `x · w` and its bias, shared by the matrix-vector
//! kernels (`matvec`) and the matmuls (`matmul`): a qkv projection's keys and values
//! stored in the pool and its queries and keys rotated (prelude `epilogue`), the norm
//! before it folded in, and (the staged kernels) the residual stream read with its
//! deferred terms.

use super::layer_norm::{norm_flags, Norm};
pub use super::rotary::Rope;
use super::Spec;

/// What a kernel does besides its product, when it is recorded: store the keys and
/// values of a qkv projection in the pool (`(Q, KV)`: the floats of the queries and of
/// the keys in a row), rotate its queries and keys, and normalise x on the way in (the
/// norm prologue of the hardware matrix-vector kernels, `matvec::fuses_norm`, or the
/// tile matmuls' staging, `matmul::fuses_staging`; x is then the residual stream and
/// the op binds the norm's buffers).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fusion {
    pub kv: Option<(usize, usize)>,
    pub norm: Option<Norm>,
    /// The staged kernels (`matvec::stages`): x is the residual stream with deferred
    /// terms.
    pub deferred: Option<Deferred>,
    /// Rotary positions on a qkv projection's query and key heads, at each row's
    /// position (an op bound with the rows' positions and the table).
    pub rope: Option<Rope>,
}

/// The buffers a [`Fusion`] reads and writes, bound with the op (stand-ins for `None`).
#[derive(Clone, Copy, Default)]
pub struct FusionBuffers<'a> {
    /// The pool a qkv projection stores to: `(k_pool, v_pool, slots)`.
    pub kv: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer, &'a wgpu::Buffer)>,
    /// The pool holds half floats.
    pub kv_half: bool,
    /// The norm folded in: its weight and bias (the matrix-vector kernels' prologue),
    /// or its weight and `g · w` (the tile matmuls' staging, `matmul::NormFold`).
    pub norm: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
    /// The staged kernels: the partial rows, the deferred bias, and `x_out`, where the
    /// row's first workgroup writes the stream whole.
    pub deferred: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer, &'a wgpu::Buffer)>,
    /// The rows' positions: the rotation's, or the embedding's (`matvec::embeds`).
    pub positions: Option<&'a wgpu::Buffer>,
    /// The rotary table, `[positions, 2, HS]` (`rotary::device_table`).
    pub rope: Option<&'a wgpu::Buffer>,
    /// The staged kernels that take the stream's base from the embedding
    /// (`matvec::embeds`): the rows' token ids and wte (one binding; the op's `x` is
    /// the position table wpe, or a dummy).
    pub embed: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
}

impl FusionBuffers<'_> {
    /// The pipeline an op bound with these buffers takes: a qkv projection's (its
    /// epilogue storing to the pool, or rotating) or a plain one's.
    pub fn spec(&self) -> Spec {
        let qkv = self.kv.is_some() || self.rope.is_some();
        Spec::projection(qkv, self.kv_half)
    }
}

/// How a kernel reads the residual stream: its base rows plus `parts` partial rows per
/// row, and the deferred projection's bias with `bias` (prelude `residual_parts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deferred {
    pub parts: usize,
    pub bias: bool,
    /// The base is the embedding with learned positions (a staged kernel that
    /// `matvec::embeds`, over a model with wpe).
    pub wpe: bool,
}

/// `STAGE_BIAS` in the norm flags of the staging kernels.
pub const STAGE_BIAS: u32 = 8;

/// `STAGE_WPE` in the norm flags of the staged kernels reading the embedding
/// (prelude `residual_embed`).
pub const STAGE_WPE: u32 = 16;

impl Deferred {
    /// The staging kernels' norm flags: the norm's, [`STAGE_BIAS`] and [`STAGE_WPE`].
    pub(super) fn flags(self, norm: Option<Norm>) -> u32 {
        norm_flags(norm)
            | if self.bias { STAGE_BIAS } else { 0 }
            | if self.wpe { STAGE_WPE } else { 0 }
    }
}
