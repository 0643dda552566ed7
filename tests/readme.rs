//! The README's first example is real code: `examples/readme.rs` holds it, this test runs it,
//! and checks that the README shows the same lines, so neither can drift from the other.

#[path = "../examples/readme.rs"]
mod readme;

/// The lines of the README's first `rust` block, trimmed, without blank ones and comments
/// that stand alone.
fn readme_block() -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("```rust\n")
        .expect("the README has a rust block")
        + 8;
    let len = readme[start..].find("```").expect("the block ends");
    readme[start..start + len]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn readme_example_compiles() {
    // It compiles (this file includes it), and it runs.
    let size = readme::run().await.expect("the README's example runs");
    assert_eq!(size, 4096 * 512 / 1024);

    // Every line the README shows stands in the example, in the same order.
    let example = include_str!("../examples/readme.rs");
    let mut rest = example;
    for line in readme_block() {
        let at = rest
            .find(line.as_str())
            .unwrap_or_else(|| panic!("README line not in examples/readme.rs (in order): {line}"));
        rest = &rest[at + line.len()..];
    }
}
