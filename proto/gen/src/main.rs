//! Writes the Rust code for croupier's protos into `src/remote/proto/`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proto = root.join("proto");
    let out = root.join("src/remote/proto");
    let files = [
        "croupier/v1/croupier.proto",
        "xds/data/orca/v3/orca_load_report.proto",
        "xds/service/orca/v3/orca.proto",
    ];
    let fds = protox::compile(files, [&proto])?;
    tonic_prost_build::configure()
        .out_dir(&out)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    println!("wrote {}", out.display());
    Ok(())
}
