//! `iotjobsd`: the AWS IoT Jobs device agent. Thin entry point; see [`iotjobs::cli`].

fn main() -> std::process::ExitCode {
    iotjobs::cli::main()
}
