// Rows of a decode batch one invocation of the software matrix-vector kernels carries
// (`matvec*`, `matvec_bt*`): each weight load serves MR rows. Rows are computed by the
// same code in every slot, so a row's numbers do not depend on the batch around it.
const MR: u32 = 4u;
