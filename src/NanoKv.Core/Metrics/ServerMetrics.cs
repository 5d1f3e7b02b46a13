using Prometheus;

namespace NanoKv.Core.Metrics;

/// <summary>
/// The Prometheus registry of one server (coordinator or volume) plus the HTTP series every server has.
/// One registry per server instance, not the process-wide default: tests run several coordinators and
/// volumes in one process, and each /metrics must show its own server only.
/// </summary>
public class ServerMetrics
{
    /// <summary>Latency buckets from 0.5 ms to ~33 s: a 1 KB PUT is ~1 ms, a 1 GB one tens of seconds.</summary>
    protected static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(0.0005, 2, 17);

    public ServerMetrics()
    {
        Registry = Prometheus.Metrics.NewCustomRegistry();
        Factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        // No exemplars: by default every observation looks up the current trace for one, which costs
        // microseconds per request; traces go to OTLP instead.
        Factory.ExemplarBehavior = new ExemplarBehavior { DefaultExemplarProvider = (_, _) => Exemplar.None };
        Requests = Factory.CreateCounter("nanokv_http_requests_total", "HTTP requests by route, method and status code", ["route", "method", "status"]);
        Duration = Factory.CreateHistogram("nanokv_http_request_duration_seconds", "HTTP request latency (a PUT includes the replicated, fsync'd write)",
            new HistogramConfiguration { LabelNames = ["route", "method"], Buckets = LatencyBuckets });
        BytesIn = Factory.CreateCounter("nanokv_http_request_bytes_total", "request body bytes (by Content-Length) by route", ["route"]);
        BytesOut = Factory.CreateCounter("nanokv_http_response_bytes_total", "response body bytes (by Content-Length) by route", ["route"]);
    }

    public CollectorRegistry Registry { get; }

    public IMetricFactory Factory { get; }

    public Counter Requests { get; }

    public Histogram Duration { get; }

    public Counter BytesIn { get; }

    public Counter BytesOut { get; }

    /// <summary>Runs before each scrape: gauges read their current value here instead of on the data path.</summary>
    public void OnScrape(Action refresh) => Registry.AddBeforeCollectCallback(refresh);
}
