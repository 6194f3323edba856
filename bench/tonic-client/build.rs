//! Generates the BenchmarkService client from Debian's grpc-proto
//! (`/usr/share/grpc-proto`, or `GRPC_PROTO_DIR`).
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=GRPC_PROTO_DIR");
    let dir = PathBuf::from(
        std::env::var_os("GRPC_PROTO_DIR").unwrap_or_else(|| "/usr/share/grpc-proto".into()),
    );
    let proto = dir.join("grpc/testing/benchmark_service.proto");
    if !proto.is_file() {
        return Err(format!("{} not found: install Debian's grpc-proto", proto.display()).into());
    }
    println!("cargo:rerun-if-changed={}", proto.display());
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&[proto], &[dir])?;
    Ok(())
}
