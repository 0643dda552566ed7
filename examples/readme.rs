//! The README's first example as a program: `tests/readme.rs` runs it and checks that the
//! README shows exactly these lines.

use std::time::Duration;

use croupier::{Policy, Pool, Wait, Worker};

struct Resizer;
impl Worker for Resizer {
    type Msg = (Vec<u8>, u32);
    type Reply = usize;
    async fn handle(&mut self, (image, width): (Vec<u8>, u32)) -> usize {
        image.len() * width as usize / 1024 // the real work goes here
    }
}

/// The README's statements, in a function the test can call. Not reformatted: the README
/// shows these lines as they are.
#[rustfmt::skip]
pub async fn run() -> Result<usize, Box<dyn std::error::Error>> {
    let pool = Pool::builder(|_id| Resizer).size(8).policy(Policy::LeastLoaded).start()?;
    let size = pool.call((vec![0; 4096], 512)).await?; // a crash costs the caller nothing
    pool.apply_within(Wait::idle(Duration::from_secs(5)), || async { /* rotate logs */ }).await?;
    pool.shutdown().await; // finishes queued work, joins tasks
    Ok(size)
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).is_some() {
        println!(
            "usage: cargo run --example readme\n\
             Takes no arguments; runs the README's first example and prints what it returned."
        );
        return std::process::ExitCode::SUCCESS;
    }
    match run().await {
        Ok(size) => {
            println!("resized to {size} bytes");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("readme: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
