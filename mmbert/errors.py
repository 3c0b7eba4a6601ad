"""Errors that the command line turns into a clear message and a non-zero exit status."""


class UsageError(Exception):
    """Unusable arguments or input (missing file, bad header, unknown language…): exit status 2, nothing written."""

    exit_code = 2


class RunFailed(UsageError):
    """A run that cannot usefully go on (a training loss that is no longer a number): its message, exit status 1."""

    exit_code = 1


def read_yaml_mapping(path, what: str = "recipe") -> dict:
    """A YAML file whose top level is a mapping; UsageError naming the file and the problem otherwise."""
    from pathlib import Path

    import yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:  # one line: what and where (PyYAML's own text spans several)
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"{path}: not valid YAML: {problem}{where}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
    return document
