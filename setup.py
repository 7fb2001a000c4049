"""Build hook: the gate and scenario files ship inside the wheel.

``gates/*.toml`` and ``scenarios/*.toml`` stay at the top of the repository, where reviewers read
them; building copies them into the package as ``exoarmur_cli/_definitions/{gates,scenarios}``,
which ``exoarmur_cli.definitions`` prefers. An editable install reads the top-level folders
directly, so nothing is copied there.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
KINDS = ("gates", "scenarios")


class BuildPyWithDefinitions(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for kind in KINDS:
            target = Path(self.build_lib) / "exoarmur_cli" / "_definitions" / kind
            self.mkpath(str(target))
            for source in sorted((ROOT / kind).glob("*.toml")):
                self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildPyWithDefinitions})
