// Weights as IEEE half floats, two per u32 (`dtype: "float16"`): `W` is one stored vec4
// of weights (a vec2<u32>), `load_w4` unpacks it to f32, so a weight costs half a
// 32-bit load and the arithmetic stays f32.
alias W = vec2<u32>;

fn load_w4(v: W) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}

// The weights are half floats (a kernel may read 8 of them a vec4<u32> load).
const W_HALVES: bool = true;
