//! The three plugin worlds, and how the host tells which one a component implements.
//!
//! Detection reads the compiled component's type: its exports decide the world, its imports
//! must be ones the host grants to that world. Everything is checked before the component can
//! ever run, so a refusal says exactly what is wrong.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

use crate::domain::plugin::World;

/// The functions a component of this world exports.
fn exported(world: World) -> &'static [&'static str] {
    match world {
        World::Validator => &["validate"],
        World::DelayPolicy => &["plan", "retry"],
        World::Channel => &["deliver"],
    }
}

/// The `dms:plugin` interfaces a component of this world may import.
fn granted_interfaces(world: World) -> &'static [&'static str] {
    match world {
        World::Validator | World::DelayPolicy => {
            &["dms:plugin/types@0.1.0", "dms:plugin/host@0.1.0"]
        }
        World::Channel => &[
            "dms:plugin/types@0.1.0",
            "dms:plugin/host@0.1.0",
            "dms:plugin/channel-host@0.1.0",
        ],
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
        .filter(|world| exported(*world).iter().any(|name| exports.contains(name)))
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
            import.starts_with("wasi:") || granted_interfaces(world).contains(&import.as_str());
        if !granted {
            return Err(LoadError::ForbiddenImport {
                import: import.clone(),
                world,
            });
        }
    }
    Ok((world, imports))
}
