//! `iotjobs-local`: a local AWS IoT Jobs service. Thin entry point; see `iotjobs::local::cli`.

fn main() -> std::process::ExitCode {
    iotjobs::local::cli::main()
}
