// The keys a row of the paged attention kernels walks, and the bindings that say where
// a row's keys are (5-8: each row's page table and position, the page tables, and for
// block-sparse attention the key blocks listed per query block). Dense (p.block == 0):
// keys first_key(qpos) ..= qpos (all of them, or a sliding window's). Block-sparse: the key blocks listed for the query's block
// qb = qpos / block, cols[row_offsets[qb] .. row_offsets[qb + 1]]; key i of the walk is
// in block cols[first + i / block], and keys after the query (in the query's own block)
// or before its sliding window are for the caller to mask (`sees`).
@group(0) @binding(5) var<storage, read> rows: array<vec2<u32>>;       // [T] (table, pos)
@group(0) @binding(6) var<storage, read> tables: array<u32>;           // pages of each row's sequence
@group(0) @binding(7) var<storage, read> row_offsets: array<u32>;      // [query blocks + 1] (sparse)
@group(0) @binding(8) var<storage, read> cols: array<u32>;             // [listed blocks] (sparse)

struct Walk {
    first: u32, // the walk's first entry in cols (sparse), its first key (dense)
    len: u32,   // keys in the walk, masked ones included
}

fn walk_of(qpos: u32) -> Walk {
    if (p.block == 0u) {
        let oldest = first_key(qpos);
        return Walk(oldest, qpos + 1u - oldest);
    }
    let qb = qpos / p.block;
    let first = row_offsets[qb];
    return Walk(first, (row_offsets[qb + 1u] - first) * p.block);
}

fn walk_key(w: Walk, i: u32) -> u32 {
    if (p.block == 0u) {
        return w.first + i;
    }
    return cols[w.first + i / p.block] * p.block + i % p.block;
}
