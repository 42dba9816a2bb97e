// The flags of a norm folded into the kernel after it (`p.norm`): the hardware
// matrix-vector kernels (preludes norm_apply, norm_prologue) and the tile matmuls
// (preludes norm_fold, stage_tile).

// p.norm: normalise x (LayerNorm unless NORM_RMS), add the norm's bias (NORM_BIAS).
const NORM_ON: u32 = 1u;
const NORM_RMS: u32 = 2u;
const NORM_BIAS: u32 = 4u;
