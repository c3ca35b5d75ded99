//! Compiles the gRPC contract with protox (pure Rust, no system `protoc`) into `OUT_DIR`, and
//! writes the file descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(["calmline/v1/triage.proto"], ["proto"])?;
    std::fs::write(out_dir.join("calmline_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
