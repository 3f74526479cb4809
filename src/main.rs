//! The `vitals` binary: parse the command line, hand over to the library.

/// mimalloc instead of glibc's malloc for Rust's allocations. Ingest builds and drops many
/// small objects (a JSON tree and a dimension map per point); with glibc malloc and free took
/// about a quarter of the server's CPU during the benchmark's HTTP ingest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match vitals::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
