//! The `dms` binary: parses the command line and hands over to [`dms::cli`].

fn main() -> std::process::ExitCode {
    dms::cli::main()
}
