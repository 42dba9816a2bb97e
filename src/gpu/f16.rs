//! Half floats as the kernels read them: values rounded to IEEE half precision (round
//! to nearest even, through the `half` crate) and packed two to a 32-bit word.

use half::f16;

/// IEEE single → half bits, rounding to nearest even (overflow to ±inf, NaN kept).
pub fn f32_to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// IEEE half bits → single.
pub fn f16_to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// `values` rounded to half precision (what a float16 model computes with).
pub fn round_to_f16(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| f16_to_f32(f32_to_f16(v))).collect()
}

/// Pack pairs of values as half floats in one 32-bit word (first value in the low
/// half, as WGSL's unpack2x16float reads it); the words are returned bit-cast to f32
/// for upload.
pub fn pack_f16(values: &[f32]) -> Vec<f32> {
    values
        .chunks(2)
        .map(|p| {
            let lo = f32_to_f16(p[0]) as u32;
            let hi = p.get(1).map_or(0, |&v| f32_to_f16(v)) as u32;
            f32::from_bits(lo | (hi << 16))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_to_f16_rounds_to_nearest_even() {
        for (x, h) in [
            (1.0f32, 0x3c00u16),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (1e6, 0x7c00),
            (0.0, 0),
            (2f32.powi(-24), 1),
            (2f32.powi(-25), 0),
        ] {
            assert_eq!(f32_to_f16(x), h, "{x}");
        }
        // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to even (1.0)
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        for i in 0..2000 {
            let x = (i as f32 - 1000.0) * 0.0137;
            let back = f16_to_f32(f32_to_f16(x));
            assert!(
                (back - x).abs() <= x.abs() * 2f32.powi(-11) + 1e-7,
                "{x} -> {back}"
            );
        }
        let packed = pack_f16(&[1.0, -2.0, 0.5]);
        assert_eq!(packed[0].to_bits(), 0xc000_3c00);
        assert_eq!(packed[1].to_bits(), 0x0000_3800);
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }
}
