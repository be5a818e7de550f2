"""Built-in plugin: the ``sersic`` and ``bulgedisk`` simulators and ``galaug simulate``."""

from galaug.hookspecs import hookimpl


@hookimpl
def galaug_register(register):
    register.source("galaug.sources.sersic:Sersic", name="sersic",
                    summary="Single Sersic profiles, each fully defined by seven parameters (GalSim)")
    register.source("galaug.sources.bulgedisk:BulgeDisk", name="bulgedisk",
                    summary="Multi-band bulge + disk + knots galaxies with neighbours and sky noise (GalSim)")


@hookimpl
def galaug_cli(cli):
    from galaug.cli.simulate import simulate_cmd

    cli.add_command(simulate_cmd)
