//! The bundled GPT-2 tokenizer gives the same ids as tiktoken-rs's r50k_base
//! (`<|endoftext|>` in the text is the special token, as in Hugging Face's GPT-2 tokenizer).

use wgformer::tokenizer::Tokenizer;

const CORPUS: &[&str] = &[
    "Hello, world! This is a test of the GPT-2 tokenizer.",
    "Deep learning is a subfield of machine learning.",
    "I'm sure you'll see they've said we'd done it, isn't it? Don't!",
    "深度学习是机器学习的一个分支。你好，世界！",
    "Emoji: 🚀🔥😀 👩‍👩‍👧‍👦 and flags 🇫🇷",
    "Runs of spaces:     four,        eight, and trailing   ",
    "Tabs\tand\t\tdouble tabs\n\nnewlines\r\nand CRLF\n\n\n",
    "    leading spaces, code: fn main() { println!(\"hi\"); }",
    "Numbers 1234567890 3.14159 1e-5 0x1F",
    "MiXeD CaSe WoRdS and ALLCAPS, naïve café résumé",
    "",
    " ",
    "<|endoftext|> is the special token, as in transformers",
];

#[test]
fn ids_equal_tiktoken_r50k_base() {
    let ours = Tokenizer::gpt2().unwrap();
    let reference = tiktoken_rs::r50k_base().unwrap();
    for text in CORPUS {
        let want: Vec<u32> = reference
            .encode_with_special_tokens(text)
            .into_iter()
            .collect();
        let got = ours.encode(text).unwrap();
        assert_eq!(got, want, "text {text:?}");
        assert_eq!(ours.decode(&got).unwrap(), *text, "round trip of {text:?}");
    }
    let all = CORPUS.join("\n");
    let want: Vec<u32> = reference
        .encode_with_special_tokens(&all)
        .into_iter()
        .collect();
    assert_eq!(ours.encode(&all).unwrap(), want);
}

#[test]
fn vocabulary_and_special_token() {
    let t = Tokenizer::gpt2().unwrap();
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(
        t.decode(&[wgformer::tokenizer::END_OF_TEXT]).unwrap(),
        "<|endoftext|>"
    );
    assert_eq!(t.encode(" is").unwrap(), vec![318]);
}

#[test]
fn other_tokenizer_file_loads_or_fails_clearly() {
    let dir = std::env::temp_dir().join(format!("wgformer-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, wgformer::tokenizer::GPT2_TOKENIZER_JSON).unwrap();
    let t = Tokenizer::load(Some(p.to_str().unwrap())).unwrap();
    assert_eq!(
        t.encode("hello").unwrap(),
        Tokenizer::gpt2().unwrap().encode("hello").unwrap()
    );
    let e = Tokenizer::load(Some("/nonexistent/tokenizer.json"))
        .err()
        .unwrap();
    assert_eq!(e.code(), "CONFIG_ERROR");
    std::fs::remove_dir_all(&dir).ok();
}
