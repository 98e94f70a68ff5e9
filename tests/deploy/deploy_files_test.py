#!/usr/bin/python3
"""Checks deploy/ without running it: the Grafana dashboard and provisioning
carry the fields Grafana needs and agree with each other and with Compose,
the Prometheus config passes promtool, and the Kubernetes manifests are
well-formed and consistent (selectors, ports, probes, user, grace period).

  deploy_files_test.py SOURCE_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

import yaml

SOURCE_DIR = None
EXPORTED_METRICS = set()  # from docs/metrics.md, read in main
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def path(*parts):
    return os.path.join(SOURCE_DIR, "deploy", *parts)


def load_yaml(*parts):
    with open(path(*parts)) as f:
        return list(yaml.safe_load_all(f))


def base_metric(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in EXPORTED_METRICS:
            return name[: -len(suffix)]
    return name


class DashboardTest(unittest.TestCase):
    def setUp(self):
        with open(path("compose/grafana/dashboards/quantmt.json")) as f:
            self.dashboard = json.load(f)
        self.datasource = load_yaml("compose/grafana/provisioning/datasources/prometheus.yml")[0]

    def test_top_level_fields(self):
        for field in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
            self.assertIn(field, self.dashboard)
        self.assertRegex(self.dashboard["uid"], r"^[a-zA-Z0-9_-]{1,40}$")

    def test_panels_have_ids_positions_and_queries(self):
        ids = [p["id"] for p in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for panel in self.dashboard["panels"]:
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, panel["title"])
            if panel["type"] == "row":
                continue
            self.assertIn(panel["type"], {"timeseries", "table", "stat", "gauge"})
            self.assertTrue(panel["targets"], f'{panel["title"]} has no query')
            ref_ids = [t["refId"] for t in panel["targets"]]
            self.assertEqual(len(ref_ids), len(set(ref_ids)), panel["title"])
            for target in panel["targets"]:
                self.assertTrue(target["expr"].strip())
                self.assertEqual(target["datasource"]["type"], "prometheus")

    def test_panels_do_not_overlap(self):
        cells = {}
        for panel in self.dashboard["panels"]:
            g = panel["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells,
                                     f'{panel["title"]} overlaps {cells.get((x, y))}')
                    cells[(x, y)] = panel["title"]

    def test_queries_use_only_exported_metrics(self):
        self.assertGreaterEqual(len(EXPORTED_METRICS), 15, "docs/metrics.md lists the metrics")
        exprs = [t["expr"] for p in self.dashboard["panels"] for t in p.get("targets", [])]
        exprs += [v["query"]["query"] for v in self.dashboard["templating"]["list"]
                  if v["type"] == "query"]
        used = set()
        for expr in exprs:
            for name in re.findall(r"\b(?:quantmt|process)_[a-z_]+\b", expr):
                used.add(base_metric(name))
        self.assertEqual(used - EXPORTED_METRICS, set(), "metrics the server does not export")
        # Every metric the issue asks to chart is on the dashboard.
        self.assertEqual(EXPORTED_METRICS - used, set(), "exported metrics not charted")

    def test_covers_the_required_views(self):
        titles = " | ".join(p["title"].lower() for p in self.dashboard["panels"])
        for words in ("requests/s", "errors", "p50 / p95 / p99", "queue time vs compute",
                      "queue depth", "batch size", "batch tokens", "tokens/s in and out",
                      "process memory", "gpu memory", "load state"):
            self.assertIn(words, titles)

    def test_variables_are_defined_and_used(self):
        names = {v["name"] for v in self.dashboard["templating"]["list"]}
        self.assertEqual(names, {"datasource", "job", "model", "rpc"})
        text = json.dumps(self.dashboard["panels"])
        for name in re.findall(r"\$\{?(\w+)", text):
            if not name.startswith("__"):
                self.assertIn(name, names)

    def test_datasource_variable_matches_provisioned_datasource(self):
        variable = next(v for v in self.dashboard["templating"]["list"] if v["type"] == "datasource")
        self.assertEqual(variable["query"], "prometheus")
        provisioned = self.datasource["datasources"][0]
        self.assertEqual(variable["current"]["value"], provisioned["uid"])


class ProvisioningTest(unittest.TestCase):
    def test_datasource(self):
        doc = load_yaml("compose/grafana/provisioning/datasources/prometheus.yml")[0]
        self.assertEqual(doc["apiVersion"], 1)
        (source,) = doc["datasources"]
        for field in ("name", "uid", "type", "access", "url"):
            self.assertIn(field, source)
        self.assertEqual(source["type"], "prometheus")
        self.assertEqual(source["url"], "http://prometheus:9090")

    def test_dashboard_provider_points_at_the_mounted_folder(self):
        doc = load_yaml("compose/grafana/provisioning/dashboards/quantmt.yml")[0]
        self.assertEqual(doc["apiVersion"], 1)
        (provider,) = doc["providers"]
        self.assertEqual(provider["type"], "file")
        compose = load_yaml("compose/docker-compose.yml")[0]
        mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
        self.assertEqual(mounts["./grafana/dashboards"], provider["options"]["path"])
        self.assertEqual(mounts["./grafana/provisioning"], "/etc/grafana/provisioning")
        self.assertTrue(os.path.isfile(path("compose/grafana/dashboards/quantmt.json")))


class ComposeTest(unittest.TestCase):
    def setUp(self):
        self.compose = load_yaml("compose/docker-compose.yml")[0]
        self.services = self.compose["services"]

    def test_services_and_image_variables(self):
        self.assertEqual(set(self.services), {"quantmt", "prometheus", "grafana"})
        self.assertRegex(self.services["prometheus"]["image"], r"^\$\{PROMETHEUS_IMAGE:-prom/")
        self.assertRegex(self.services["grafana"]["image"], r"^\$\{GRAFANA_IMAGE:-grafana/")
        self.assertRegex(self.services["quantmt"]["image"], r"^\$\{QUANTMT_IMAGE:-")

    def test_ports_are_published_on_loopback_only(self):
        for name, service in self.services.items():
            for port in service.get("ports", []):
                self.assertTrue(str(port).startswith("127.0.0.1:"), f"{name}: {port}")

    def test_server_forwards_signals(self):
        self.assertTrue(self.services["quantmt"].get("init"))

    def test_prometheus_scrapes_the_quantmt_service(self):
        config = load_yaml("compose/prometheus/prometheus.yml")[0]
        targets = [t for job in config["scrape_configs"] for sc in job["static_configs"]
                   for t in sc["targets"]]
        self.assertIn("quantmt:9464", targets)
        mounts = dict(v.split(":")[:2] for v in self.services["prometheus"]["volumes"])
        self.assertEqual(mounts["./prometheus/prometheus.yml"], "/etc/prometheus/prometheus.yml")

    def test_promtool_accepts_the_config(self):
        if shutil.which("promtool") is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        result = subprocess.run(["promtool", "check", "config",
                                 path("compose/prometheus/prometheus.yml")],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class DockerfileTest(unittest.TestCase):
    RUNTIME_STAGE = "\nFROM ${BASE_IMAGE} AS runtime\n"

    def runtime_stage(self, name):
        """The Dockerfile from its runtime stage's FROM line to the end."""
        with open(path("docker", name)) as f:
            text = f.read()
        self.assertIn(self.RUNTIME_STAGE, text, f"{name} has no runtime stage")
        return text[text.index(self.RUNTIME_STAGE):]

    def test_both_images_share_the_runtime_stage(self):
        # The image compiled in Docker and the one packaged from a build may
        # differ only in where /opt/quantmt comes from.
        self.assertEqual(self.runtime_stage("Dockerfile"), self.runtime_stage("Dockerfile.runtime"))


class KubernetesTest(unittest.TestCase):
    def setUp(self):
        self.docs = {}
        for name in sorted(os.listdir(path("k8s"))):
            # kustomization.yaml configures kubectl -k; it is no API object.
            if name.endswith(".yaml") and name != "kustomization.yaml":
                for doc in load_yaml("k8s", name):
                    self.docs[(doc["kind"], doc["metadata"]["name"])] = doc
        self.deployment = self.docs[("Deployment", "quantmt")]
        self.pod = self.deployment["spec"]["template"]
        self.container = self.pod["spec"]["containers"][0]
        self.ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}

    def test_every_object_is_well_formed(self):
        api_versions = {"Deployment": "apps/v1", "Service": "v1",
                        "HorizontalPodAutoscaler": "autoscaling/v2",
                        "PodDisruptionBudget": "policy/v1",
                        "ServiceMonitor": "monitoring.coreos.com/v1"}
        for (kind, name), doc in self.docs.items():
            self.assertEqual(doc["apiVersion"], api_versions[kind], kind)
            self.assertRegex(name, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

    def test_kustomization_lists_existing_files(self):
        kustomization = load_yaml("k8s", "kustomization.yaml")[0]
        self.assertEqual(kustomization["kind"], "Kustomization")
        for resource in kustomization["resources"]:
            self.assertTrue(os.path.isfile(path("k8s", resource)), resource)

    def test_selectors_match_pod_labels(self):
        labels = self.pod["metadata"]["labels"]
        selector = self.deployment["spec"]["selector"]["matchLabels"]
        self.assertLessEqual(selector.items(), labels.items())
        for (kind, name), doc in self.docs.items():
            if kind == "Service":
                self.assertLessEqual(doc["spec"]["selector"].items(), labels.items(), name)
                for port in doc["spec"]["ports"]:
                    self.assertIn(port["targetPort"], self.ports, name)
            if kind == "PodDisruptionBudget":
                self.assertLessEqual(doc["spec"]["selector"]["matchLabels"].items(),
                                     labels.items())

    def test_probes_use_grpc_health_on_the_grpc_port(self):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(self.container[probe]["grpc"]["port"], self.ports["grpc"], probe)
        self.assertEqual(self.ports, {"grpc": 50051, "metrics": 9464})

    def test_grpc_load_balancing_has_a_headless_service(self):
        headless = [doc for (kind, _), doc in self.docs.items()
                    if kind == "Service" and doc["spec"].get("clusterIP") == "None"]
        self.assertEqual(len(headless), 1)
        for (kind, name), doc in self.docs.items():
            if kind == "Service":
                grpc_port = next(p for p in doc["spec"]["ports"] if p["name"] == "grpc")
                self.assertEqual(grpc_port.get("appProtocol"), "grpc", name)

    def test_autoscaler_targets_the_deployment_with_cpu_requests(self):
        hpa = self.docs[("HorizontalPodAutoscaler", "quantmt")]
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], "quantmt")
        self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        # Utilization targets are relative to requests: without one the HPA is idle.
        self.assertIn("cpu", self.container["resources"]["requests"])

    def test_metrics_are_discoverable(self):
        annotations = self.pod["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), self.ports["metrics"])
        monitor = self.docs[("ServiceMonitor", "quantmt")]
        self.assertEqual(monitor["spec"]["endpoints"][0]["port"], "metrics")
        service = self.docs[("Service", "quantmt")]
        self.assertLessEqual(monitor["spec"]["selector"]["matchLabels"].items(),
                             service["metadata"]["labels"].items())

    def test_runs_as_the_image_user_and_drains_before_kill(self):
        with open(path("docker/Dockerfile")) as f:
            uid = re.search(r"^USER (\d+)", f.read(), re.M).group(1)
        security = self.pod["spec"]["securityContext"]
        self.assertTrue(security["runAsNonRoot"])
        self.assertEqual(str(security["runAsUser"]), uid)
        env = {e["name"]: e["value"] for e in self.container["env"]}
        pre_stop = int(self.container["lifecycle"]["preStop"]["exec"]["command"][-1])
        self.assertGreater(self.pod["spec"]["terminationGracePeriodSeconds"],
                           int(env["QUANTMT_SHUTDOWN_GRACE_S"]) + pre_stop)


def documented_metrics(source_dir):
    """Metric names in the first column of docs/metrics.md's tables."""
    with open(os.path.join(source_dir, "docs", "metrics.md")) as f:
        return set(re.findall(r"^\| `((?:quantmt|process)_[a-z_]+)`", f.read(), re.M))


if __name__ == "__main__":
    SOURCE_DIR = sys.argv.pop(1) if len(sys.argv) > 1 else os.getcwd()
    EXPORTED_METRICS.update(documented_metrics(SOURCE_DIR))
    unittest.main(verbosity=2)
