//! `twinops schema [NAME]`: print a bundled schema, or list them.

use std::io::Write;

use crate::command::{Failure, written};
use crate::config::operational;
use crate::diag::did_you_mean;
use crate::exit::ExitStatus;
use crate::schema::BUNDLED;

pub(super) fn run(name: Option<&str>, out: &mut dyn Write) -> Result<ExitStatus, Failure> {
    match name {
        None => {
            for (name, file, _) in BUNDLED {
                written(writeln!(out, "{name:<24} {file}"))?;
            }
        }
        Some(wanted) => {
            let Some((_, _, text)) = BUNDLED.iter().find(|(name, _, _)| *name == wanted) else {
                let help = did_you_mean(wanted, BUNDLED.iter().map(|(name, _, _)| *name))
                    .map(|near| format!("did you mean `{near}`?"));
                return Err(Failure::new(operational(
                    format!("no bundled schema named `{wanted}`"),
                    Some(
                        help.as_deref()
                            .unwrap_or("run `twinops schema` to list them"),
                    ),
                )));
            };
            written(write!(out, "{text}"))?;
        }
    }
    Ok(ExitStatus::Success)
}
