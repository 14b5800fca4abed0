//! `kiln login` and `kiln logout`: credentials in the auth file podman and skopeo also read.

use std::io::BufRead;

use anyhow::{Context as _, bail};

use super::args::{LoginArgs, LogoutArgs};
use super::{Failure, env, runtime};
use crate::registry;

/// Runs `kiln login`: checks the credentials against the registry, then saves them.
pub fn login(args: &LoginArgs) -> Result<(), Failure> {
    Ok(login_checked(args)?)
}

fn login_checked(args: &LoginArgs) -> anyhow::Result<()> {
    let username = match &args.username {
        Some(u) => u.clone(),
        None => bail!("--username is required"),
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin cannot be used together"),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("a password is required: --password-stdin (preferred) or --password"),
    };
    let client = env::registry_client(&args.registry)?;
    let auth = env::auth_files(args.registry.authfile.as_deref());
    let runtime = runtime().map_err(|f| f.error)?;
    let path = runtime.block_on(registry::login(&client, &auth, &args.registry_host, &username, &password))?;
    eprintln!("Login Succeeded! (credentials saved to {})", path.display());
    Ok(())
}

/// Runs `kiln logout`.
pub fn logout(args: &LogoutArgs) -> Result<(), Failure> {
    let auth = env::auth_files(args.authfile.as_deref());
    if registry::logout(&auth, &args.registry_host)? {
        eprintln!("Removed login credentials for {}", args.registry_host);
        Ok(())
    } else {
        Err(anyhow::anyhow!("not logged in to {}", args.registry_host).into())
    }
}
