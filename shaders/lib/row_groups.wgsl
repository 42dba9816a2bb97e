// wte is stored in row groups (`kernels::matmul_bt::to_row_groups`): for every 32 rows
// and every 8 columns, the 8 values of each row of the group, so the rows a subgroup
// reads side by side lie side by side in memory. Start of `row`, in units of 4 values:
fn row_base(row: u32, k4: u32) -> u32 {
    return (row / 32u) * ((k4 + 1u) / 2u) * 64u + (row % 32u) * 2u;
}

// Columns 4k .. 4k + 3 of a row, from its start, in units of 4 values.
fn col_step(k: u32) -> u32 {
    return (k / 2u) * 64u + (k % 2u);
}
