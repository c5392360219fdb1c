//! Generates the token-agent gRPC client and server from `proto/`, with a
//! vendored protoc (no system protoc is needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(
        &["proto/token_agent.proto"],
        &[
            "proto",
            well_known.to_str().ok_or("non-UTF-8 include path")?,
        ],
    )?;
    Ok(())
}
