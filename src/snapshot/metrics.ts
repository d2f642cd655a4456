// Reading and rendering route metrics (mtu, advmss, rtt and the like).

import { invalidField, isRecord, readString, readUint32, type RouteContext } from "./fields.js";
import { NUMERIC_METRICS, type NumericMetric, type RouteMetrics } from "./route.js";

// ip prints these in milliseconds and `ip route` reads a bare number in
// another unit, so rendering appends "ms".
const MILLISECOND_METRICS: ReadonlySet<NumericMetric> = new Set(["rtt", "rttvar", "rto_min"]);

function isNumericMetric(name: string): name is NumericMetric {
  return (NUMERIC_METRICS as readonly string[]).includes(name);
}

/**
 * Reads ip's `metrics` field, an array that contains one object.
 *
 * NOTE: ip 6.1 prints no lock marker in JSON, so `mtu lock 1400` reads as
 * `mtu 1400` and the copy's metrics are never locked.
 */
export function readMetrics(context: RouteContext, value: unknown): RouteMetrics {
  const [fields, ...extra] = Array.isArray(value) ? value : [];
  if (!isRecord(fields) || extra.length > 0) {
    throw invalidField(context, "metrics", value, "an array that contains one object");
  }

  const metrics: RouteMetrics = {};
  for (const [name, metricValue] of Object.entries(fields)) {
    const field = `metrics.${name}`;
    if (isNumericMetric(name)) {
      metrics[name] = readUint32(context, field, metricValue);
    } else if (name === "congestion") {
      metrics.congctl = readString(context, field, metricValue);
    } else if (name === "ecn" && metricValue === null) {
      // ip prints `features ecn` as a key with the value null.
      metrics.ecn = true;
    } else {
      throw invalidField(context, field, metricValue, "a metric that splitroute knows how to copy");
    }
  }
  return metrics;
}

/** Renders metrics as `ip route` arguments, in the order of NUMERIC_METRICS. */
export function metricArgs(metrics: RouteMetrics): string[] {
  const args: string[] = [];
  for (const name of NUMERIC_METRICS) {
    const value = metrics[name];
    if (value === undefined) {
      continue;
    }
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`invalid route metric ${name} ${value}: expected a non-negative integer`);
    }
    args.push(name, MILLISECOND_METRICS.has(name) ? `${value}ms` : String(value));
  }
  if (metrics.ecn) {
    args.push("features", "ecn");
  }
  if (metrics.congctl !== undefined) {
    args.push("congctl", metrics.congctl);
  }
  return args;
}
