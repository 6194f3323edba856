//! Generates the `grpc.testing` messages and the tonic server/client code from
//! the official interop protos.
//!
//! The protos are taken from Debian's `grpc-proto` package by default
//! (`/usr/share/grpc-proto`); set `GRPC_PROTO_DIR` to a directory that
//! contains `grpc/testing/test.proto` to use another copy.

use std::path::PathBuf;

const DEFAULT_PROTO_DIR: &str = "/usr/share/grpc-proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=GRPC_PROTO_DIR");
    println!("cargo:rerun-if-env-changed=PROTOC");

    let dir = PathBuf::from(
        std::env::var_os("GRPC_PROTO_DIR").unwrap_or_else(|| DEFAULT_PROTO_DIR.into()),
    );
    let test_proto = dir.join("grpc/testing/test.proto");
    if !test_proto.is_file() {
        return Err(format!(
            "{} not found: install Debian's grpc-proto package or set GRPC_PROTO_DIR \
             to a directory containing grpc/testing/test.proto",
            test_proto.display()
        )
        .into());
    }
    for f in ["test.proto", "messages.proto", "empty.proto"] {
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("grpc/testing").join(f).display()
        );
    }

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&[test_proto], &[dir])?;
    Ok(())
}
