//! The `vitals` binary: parse the command line, hand over to the library.

/// mimalloc instead of glibc's malloc: ingest allocates and frees request-sized buffers at a
/// high rate, which glibc answered with page faults and consolidation (about a quarter of the
/// server's CPU in the event-ingest profile), and it keeps fragmentation (RSS) lower.
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
