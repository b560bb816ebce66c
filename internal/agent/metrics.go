package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// Metrics are the agent's Prometheus metrics, on a registry of its own.
type Metrics struct {
	Registry    *prometheus.Registry
	deploys     *prometheus.CounterVec
	steps       *prometheus.HistogramVec
	commit      *prometheus.GaugeVec
	webhooks    *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// NewMetrics registers the agent's metrics for app; services, when set,
// reports the services' state at each scrape.
func NewMetrics(app string, services func() []deploy.ServiceStatus) *Metrics {
	labels := prometheus.Labels{"app": app}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_deploys_total", Help: "Deploys and rollbacks by kind and outcome.", ConstLabels: labels,
		}, []string{"kind", "outcome"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "slipway_step_duration_seconds", Help: "Duration of deploy steps.", ConstLabels: labels,
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"step", "outcome"}),
		commit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slipway_current_commit_info", Help: "The live commit and version (value 1).", ConstLabels: labels,
		}, []string{"commit", "version"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_webhook_requests_total", Help: "Webhook requests by provider and result.", ConstLabels: labels,
		}, []string{"provider", "result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "slipway_last_success_timestamp_seconds", Help: "When the last deploy succeeded (unix time).", ConstLabels: labels,
		}),
	}
	m.Registry.MustRegister(m.deploys, m.steps, m.commit, m.webhooks, m.lastSuccess,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if services != nil {
		m.Registry.MustRegister(newServiceCollector(app, services))
	}
	return m
}

// serviceCollector reports the services' state at each scrape.
type serviceCollector struct {
	states       func() []deploy.ServiceStatus
	up, restarts *prometheus.Desc
}

func newServiceCollector(app string, states func() []deploy.ServiceStatus) *serviceCollector {
	labels := prometheus.Labels{"app": app}
	return &serviceCollector{states: states,
		up:       prometheus.NewDesc("slipway_service_up", "Whether the service runs (1) or not (0).", []string{"service"}, labels),
		restarts: prometheus.NewDesc("slipway_service_restarts_total", "Times the service manager restarted the service after it failed, since the last deploy started it.", []string{"service"}, labels),
	}
}

func (c *serviceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up; ch <- c.restarts }

func (c *serviceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.states() {
		up := 0.0
		if s.Running {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, s.Name)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(s.Restarts), s.Name)
	}
}

// step records one finished step.
func (m *Metrics) step(ev deploy.Event) {
	if ev.Phase == deploy.PhaseEnd {
		m.steps.WithLabelValues(stepLabel(ev.Step), string(ev.Outcome)).Observe(ev.Duration.Seconds())
	}
}

// stepLabel folds build:NAME into build, keeping the label set small.
func stepLabel(s string) string {
	if len(s) > 6 && s[:6] == "build:" {
		return "build"
	}
	return s
}

// finished records a finished deploy or rollback.
func (m *Metrics) finished(kind string, res deploy.Result) {
	m.deploys.WithLabelValues(kind, string(res.Outcome)).Inc()
	if res.Outcome == ledger.Succeeded {
		m.lastSuccess.SetToCurrentTime()
	}
}

// live sets the current commit info.
func (m *Metrics) live(commit, version string) {
	m.commit.Reset()
	if commit != "" {
		m.commit.WithLabelValues(commit, version).Set(1)
	}
}

// Webhook counts one webhook request.
func (m *Metrics) Webhook(provider, result string) {
	m.webhooks.WithLabelValues(provider, result).Inc()
}

func promHandler(m *Metrics) http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
