"""Kotlin: symbols, relations, docs and chunks of a realistic sample file."""

from __future__ import annotations

from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, assert_split_inside, parse_sample, relations


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("WeatherRepository.kt", "Weather.kt", "kotlin", budget)


def test_extensions() -> None:
    assert BY_EXTENSION[".kt"].name == "kotlin"
    assert BY_EXTENSION[".kts"].name == "kotlin"


def test_symbols() -> None:
    r, _ = parse()
    assert not r.flags
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("class", "Reading"),  # data class
        ("interface", "WeatherSource"),
        ("method", "WeatherSource.fetch"),
        ("method", "WeatherSource.describe"),
        ("class", "Result"),  # sealed class
        ("class", "Result.Ok"),
        ("class", "Result.Failed"),
        ("enum", "Unit"),
        ("method", "Unit.label"),
        ("class", "WeatherRepository"),
        ("method", "WeatherRepository.constructor"),  # secondary constructor
        ("method", "WeatherRepository.current"),
        ("function", "WeatherRepository.current.backoff"),  # local function
        ("method", "WeatherRepository.average"),
        ("class", "WeatherRepository.Defaults"),  # companion object Defaults
        ("method", "WeatherRepository.Defaults.create"),
        ("class", "WeatherRepository.Exporter"),  # inner class
        ("method", "WeatherRepository.Exporter.run"),
        ("class", "Registry"),  # object
        ("method", "Registry.register"),
        ("function", "toFahrenheit"),  # extension function
    }
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["WeatherRepository.current.backoff"].parent == "WeatherRepository.current"
    assert by_name["WeatherRepository.Defaults.create"].parent == "WeatherRepository.Defaults"
    assert by_name["Result.Ok"].parent == "Result"
    # the signature ends where the body starts, across lines
    assert by_name["WeatherRepository"].signature == (
        "class WeatherRepository( private val source: WeatherSource,"
        " private val clock: Clock, ) : BaseRepository(), Cache<String, Reading> by LruCache(64)"
    )
    assert by_name["WeatherRepository.average"].signature == "fun average(): Double"
    assert by_name["Unit.label"].signature == "override fun label(): String"


def test_docs() -> None:
    r, _ = parse()
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["Reading"].doc == "A temperature reading from one station."
    assert by_name["WeatherSource"].doc == "Where readings come from."
    assert by_name["WeatherRepository"].doc == "Caches readings and retries failed fetches."
    assert by_name["WeatherRepository.current"].doc == (
        "Fetches a reading, retrying up to [attempts] times."
    )
    assert by_name["Registry"].doc == ""


def test_relations() -> None:
    r, _ = parse()
    assert relations(r, "imports") == {
        ("Weather.kt", "kotlinx.coroutines.delay"),
        ("Weather.kt", "kotlinx.coroutines.withContext"),
        ("Weather.kt", "java.time.Instant"),
        ("Weather.kt", "com.example.net"),  # import com.example.net.*
    }
    # a supertype called as a constructor is the superclass; an interface extends its own
    assert relations(r, "extends") == {
        ("WeatherSource", "AutoCloseable"),
        ("Result.Ok", "Result<T>"),
        ("Result.Failed", "Result<Nothing>"),
        ("WeatherRepository", "BaseRepository"),
    }
    assert relations(r, "implements") == {
        ("Unit", "Labeled"),
        ("WeatherRepository", "Cache<String, Reading>"),  # by delegation
        ("WeatherRepository.Exporter", "Runnable"),
    }
    assert {
        ("WeatherRepository", "mutableListOf"),
        ("WeatherRepository.constructor", "log"),
        ("WeatherRepository.current", "source.fetch"),
        ("WeatherRepository.current", "this.history.add"),
        ("WeatherRepository.current", "Result.Ok"),
        ("WeatherRepository.current", "backoff"),
        ("WeatherRepository.Defaults.create", "WeatherRepository"),
        ("WeatherRepository.Exporter.run", "println"),  # inside a lambda
        ("Unit.label", "symbol.lowercase"),
    } <= relations(r, "calls")


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        r, source = parse(budget)
        assert_chunks_tile(r, source, budget)


def test_small_budget_splits_the_class() -> None:
    r, _ = parse(60)
    inside = assert_split_inside(r, "WeatherRepository", 3)
    assert any(
        c.scope == "WeatherRepository" and "WeatherRepository.average" in c.symbols for c in inside
    )
