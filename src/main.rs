//! The `vitals` binary: parse the command line, hand over to the library.

fn main() -> std::process::ExitCode {
    match vitals::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
