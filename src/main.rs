//! The `burrow` binary: parse, run, report the error once, exit with Docker's codes.

fn main() {
    std::process::exit(burrow::cli::main());
}
