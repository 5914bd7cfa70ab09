//! Files and directories only this server's user may read: the data directory with its
//! generated secrets, the plugin compile cache, backups (they hold password hashes and sealed
//! content). One place, so every caller gets the same modes.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates `dir` and its parents with mode 0700. A directory that exists already is left as
/// it is: its mode is the operator's choice.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates (or truncates) `path` for writing; a new file gets mode 0600.
pub fn create_file(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}
