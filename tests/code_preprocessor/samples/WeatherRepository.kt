package com.example.weather

import kotlinx.coroutines.delay
import kotlinx.coroutines.withContext
import java.time.Instant
import com.example.net.*

/** A temperature reading from one station. */
data class Reading(val station: String, val celsius: Double, val at: Instant)

/**
 * Where readings come from.
 */
interface WeatherSource : AutoCloseable {
    suspend fun fetch(station: String): Reading

    fun describe(): String = "source"
}

sealed class Result<out T> {
    data class Ok<T>(val value: T) : Result<T>()
    data class Failed(val error: Throwable) : Result<Nothing>()
}

enum class Unit(val symbol: String) : Labeled {
    CELSIUS("C"),
    FAHRENHEIT("F");

    override fun label(): String = symbol.lowercase()
}

// Caches readings and retries failed fetches.
class WeatherRepository(
    private val source: WeatherSource,
    private val clock: Clock,
) : BaseRepository(), Cache<String, Reading> by LruCache(64) {

    private val history = mutableListOf<Reading>()

    constructor(source: WeatherSource) : this(source, Clock.system()) {
        log("secondary constructor")
    }

    /** Fetches a reading, retrying up to [attempts] times. */
    suspend fun current(station: String, attempts: Int = 3): Result<Reading> {
        fun backoff(attempt: Int): Long = 100L * (1 shl attempt)

        repeat(attempts) { attempt ->
            try {
                val reading = source.fetch(station)
                this.history.add(reading)
                return Result.Ok(reading)
            } catch (e: IOException) {
                delay(backoff(attempt))
            }
        }
        return Result.Failed(IllegalStateException("no reading for $station"))
    }

    fun average(): Double = history.map { it.celsius }.average()

    companion object Defaults {
        const val STATIONS = 3

        fun create(source: WeatherSource): WeatherRepository = WeatherRepository(source)
    }

    inner class Exporter : Runnable {
        override fun run() {
            history.forEach { println(it) }
        }
    }
}

object Registry {
    private val sources = mutableMapOf<String, WeatherSource>()

    fun register(name: String, source: WeatherSource) {
        sources[name] = source
    }
}

fun Reading.toFahrenheit(): Double = celsius * 9 / 5 + 32
