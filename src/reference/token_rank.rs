//! Where a token stands under a row of logits: its log-probability and its rank.

/// `(rank, logprob)` of id `target` in `row` (logits over ids 0..): the rank counts the
/// ids before it (a larger logit, or an equal one with a lower id), 0 = the first
/// choice; the log-probability is against the whole row's log-sum-exp.
pub fn token_rank(row: &[f32], target: usize) -> (usize, f64) {
    let v = row[target];
    let rank = row
        .iter()
        .enumerate()
        .filter(|&(j, &x)| x > v || (x == v && j < target))
        .count();
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = max
        + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    (rank, v as f64 - lse)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranks_and_logprobs() {
        let row = [1.0, 3.0, 3.0, -2.0];
        assert_eq!(super::token_rank(&row, 1).0, 0);
        assert_eq!(
            super::token_rank(&row, 2).0,
            1,
            "a tie ranks after the lower id"
        );
        assert_eq!(super::token_rank(&row, 3).0, 3);
        let lp = super::token_rank(&[0.0, 0.0], 0).1;
        assert!((lp - 0.5f64.ln()).abs() < 1e-12);
    }
}
