//! The real `twinops` binary, run as a user runs it: wall time of each run,
//! and its peak memory through `/usr/bin/time` where that exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::measure;

/// GNU time, which reports a child's peak resident memory.
const TIME: &str = "/usr/bin/time";

/// The `twinops` binary the suite runs.
pub(crate) struct Twinops {
    path: PathBuf,
    /// `/usr/bin/time`, when the machine has it.
    time: Option<PathBuf>,
}

/// The medians of several runs of one command.
pub(crate) struct Measured {
    pub(crate) seconds: f64,
    /// Peak resident memory in MiB; `None` without `/usr/bin/time`.
    pub(crate) peak_mib: Option<f64>,
    /// The command line, to reproduce the figure.
    pub(crate) command: String,
}

impl Twinops {
    /// The binary cargo built, copied into `work` first so that a rebuild
    /// during a run cannot change what is measured. The copy is renamed into
    /// place, so a run still using the previous copy keeps it.
    pub(crate) fn copied_into(work: &Path) -> Self {
        let built = built();
        let profile = built
            .parent()
            .and_then(Path::file_name)
            .expect("the binary sits in target/PROFILE/");
        let directory = work.join("bin").join(profile);
        std::fs::create_dir_all(&directory).expect("the binary's directory is created");
        let path = directory.join("twinops");
        let copying = directory.join(format!("twinops.{}", std::process::id()));
        std::fs::copy(&built, &copying).expect("the binary is copied");
        std::fs::rename(&copying, &path).expect("the copy is put in place");
        Self {
            path,
            time: Some(PathBuf::from(TIME)).filter(|time| time.exists()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `twinops args` `runs` times, in `directory` (default: here),
    /// calling `before` ahead of each run (untimed), stdout to /dev/null;
    /// fails loudly, with the command's stderr, when a run does not succeed.
    pub(crate) fn measure(
        &self,
        directory: Option<&Path>,
        args: &[String],
        runs: usize,
        before: impl FnMut(),
    ) -> Measured {
        self.measure_into(directory, args, runs, before, None)
    }

    /// [`Self::measure`], with each run's stdout written to the file
    /// `stdout` instead (the last run's is left there).
    pub(crate) fn measure_saving_stdout(
        &self,
        args: &[String],
        runs: usize,
        stdout: &Path,
    ) -> Measured {
        self.measure_into(None, args, runs, || {}, Some(stdout))
    }

    fn measure_into(
        &self,
        directory: Option<&Path>,
        args: &[String],
        runs: usize,
        mut before: impl FnMut(),
        stdout: Option<&Path>,
    ) -> Measured {
        let mut times = Vec::new();
        let mut peaks = Vec::new();
        for _ in 0..runs.max(1) {
            before();
            let (seconds, peak) = self.run_into(directory, args, stdout);
            times.push(seconds);
            peaks.extend(peak);
        }
        Measured {
            seconds: measure::median(times),
            peak_mib: (!peaks.is_empty()).then(|| measure::median(peaks)),
            command: self.command_line(directory, args),
        }
    }

    /// One run, stdout to /dev/null: its wall time in seconds, and its peak
    /// memory in MiB.
    pub(crate) fn run(&self, directory: Option<&Path>, args: &[String]) -> (f64, Option<f64>) {
        self.run_into(directory, args, None)
    }

    /// One run, stdout to the file `stdout` (default: /dev/null).
    fn run_into(
        &self,
        directory: Option<&Path>,
        args: &[String],
        stdout: Option<&Path>,
    ) -> (f64, Option<f64>) {
        let stdout = stdout.map_or_else(Stdio::null, |path| {
            Stdio::from(std::fs::File::create(path).expect("the stdout file is created"))
        });
        let peak_file =
            std::env::temp_dir().join(format!("twinops-bench-{}.time", std::process::id()));
        let mut command = match &self.time {
            Some(time) => {
                let mut command = Command::new(time);
                command
                    .args(["-f", "%M", "-o"])
                    .arg(&peak_file)
                    .arg(&self.path);
                command
            }
            None => Command::new(&self.path),
        };
        if let Some(directory) = directory {
            command.current_dir(directory);
        }
        command
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        let started = Instant::now();
        let output = command.output().expect("twinops starts");
        let seconds = started.elapsed().as_secs_f64();
        assert!(
            output.status.success(),
            "`{}` failed ({}):\n{}",
            self.command_line(directory, args),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let peak = self.time.as_ref().map(|_| {
            let text = std::fs::read_to_string(&peak_file).expect("time wrote its report");
            let kib: f64 = text
                .lines()
                .last()
                .and_then(|line| line.trim().parse().ok())
                .expect("time reports the peak in KiB");
            let _ = std::fs::remove_file(&peak_file);
            kib / 1024.0
        });
        (seconds, peak)
    }

    /// `twinops ARGS`, or `(cd DIR && twinops ARGS)`: the binary's path is
    /// absolute there.
    pub(crate) fn command_line(&self, directory: Option<&Path>, args: &[String]) -> String {
        let mut line = match directory {
            Some(directory) => format!("(cd {} && {}", arg(directory), self.path.display()),
            None => arg(&self.path),
        };
        for arg in args {
            line.push(' ');
            if arg.contains(' ') {
                line.push('\'');
                line.push_str(arg);
                line.push('\'');
            } else {
                line.push_str(arg);
            }
        }
        if directory.is_some() {
            line.push(')');
        }
        line
    }
}

/// The binary cargo built beside this benchmark.
pub(crate) fn built() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_twinops"))
}

/// The target directory the binary was built into (`target/`).
pub(crate) fn target_dir() -> PathBuf {
    built()
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in target/PROFILE/")
        .to_owned()
}

/// `path` as a command-line argument: relative to the current directory
/// (cargo runs benchmarks in the package's root) when it is inside it.
pub(crate) fn arg(path: &Path) -> String {
    let here = std::env::current_dir().expect("a current directory");
    path.strip_prefix(&here)
        .unwrap_or(path)
        .to_str()
        .expect("work paths are UTF-8")
        .to_owned()
}

/// Owned command-line arguments.
pub(crate) fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|&arg| arg.to_owned()).collect()
}
