// Rows of a decode batch one invocation of the software matrix-vector kernels carries
// (`matvec*`, `matvec_bt*`): each weight load (and half-float unpack) serves up to MR
// rows, and only the rows present are computed. Every row is computed by the same
// code, so a row's numbers do not depend on the batch around it.
const MR: u32 = 16u;
