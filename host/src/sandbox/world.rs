//! The three plugin worlds, and how the host tells which one a component implements.
//!
//! Detection reads the compiled component's type: its exports decide the world, its imports
//! must be ones the host grants to that world. Everything is checked before the component can
//! ever run, so a refusal says exactly what is wrong.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// The kind of hook a plugin serves, one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum World {
    /// `world validator`: accepts or rejects a message.
    Validator,
    /// `world delay-policy`: plans the first delivery and retries.
    DelayPolicy,
    /// `world channel`: delivers a message.
    Channel,
}

impl World {
    /// Every world.
    pub const ALL: [World; 3] = [Self::Validator, Self::DelayPolicy, Self::Channel];

    /// The world's name in the WIT file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::DelayPolicy => "delay-policy",
            Self::Channel => "channel",
        }
    }

    /// The functions a component of this world exports.
    fn exports(self) -> &'static [&'static str] {
        match self {
            Self::Validator => &["validate"],
            Self::DelayPolicy => &["plan", "retry"],
            Self::Channel => &["deliver"],
        }
    }

    /// The `dms:plugin` interfaces a component of this world may import.
    fn granted_interfaces(self) -> &'static [&'static str] {
        match self {
            Self::Validator | Self::DelayPolicy => {
                &["dms:plugin/types@0.1.0", "dms:plugin/host@0.1.0"]
            }
            Self::Channel => &[
                "dms:plugin/types@0.1.0",
                "dms:plugin/host@0.1.0",
                "dms:plugin/channel-host@0.1.0",
            ],
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for World {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        World::ALL
            .into_iter()
            .find(|world| world.as_str() == value)
            .ok_or_else(|| {
                format!("unknown world {value:?}; expected validator, delay-policy or channel")
            })
    }
}

/// The world `component` implements and its imports, or why it is refused.
///
/// WASI imports pass here: the host links a locked-down WASI (no files, environment, network or
/// real clocks), and the linker refuses any WASI interface it does not provide.
pub(crate) fn detect(
    engine: &Engine,
    component: &Component,
) -> Result<(World, Vec<String>), LoadError> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let matching: Vec<World> = World::ALL
        .into_iter()
        .filter(|world| world.exports().iter().any(|name| exports.contains(name)))
        .collect();
    let world = match matching.as_slice() {
        [world] => *world,
        [] => {
            let exports = if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(LoadError::UnknownWorld { exports });
        }
        several => {
            let names: Vec<&str> = several.iter().map(|world| world.as_str()).collect();
            return Err(LoadError::AmbiguousWorld(names.join(", ")));
        }
    };
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    for import in &imports {
        let granted =
            import.starts_with("wasi:") || world.granted_interfaces().contains(&import.as_str());
        if !granted {
            return Err(LoadError::ForbiddenImport {
                import: import.clone(),
                world,
            });
        }
    }
    Ok((world, imports))
}
