// k8scheck validates Kubernetes manifests offline, against the real Go API types.
//
//	kustomize build deploy/k8s/overlays/production | k8scheck -external Secret/zonewatch-secrets -
//	k8scheck manifests.yaml ...
//
// -external KIND/NAME (repeatable) names a ConfigMap or Secret that is created outside these
// manifests (a secret manager, `kubectl create secret`): references to it are accepted, its keys
// cannot be checked.
//
// kubeconform fetches its schemas from GitHub at run time, which this project cannot
// reach. The Kubernetes OpenAPI schemas are generated from the Go types of k8s.io/api, and the
// monitoring.coreos.com CRD schemas from the Go types of prometheus-operator's pkg/apis/monitoring,
// so this program decodes every object STRICTLY into those types (unknown or duplicated fields,
// wrong value types, unparsable quantities and durations are errors) and then checks what the API
// server or the operator would refuse or silently mis-wire:
//
//   - names, label keys and values, port names and env var names follow apimachinery's validation;
//   - every container has a name and an image; requests do not exceed limits;
//   - a Deployment's / StatefulSet's selector selects its own pod template; a StatefulSet's
//     serviceName names a headless Service of the same set;
//   - a probe or Service targetPort given by name names a port of the container(s) it points at;
//   - a Service, PodDisruptionBudget, PodMonitor or ServiceMonitor selector selects something in
//     the same set, and a monitor's endpoint port exists on what it selects;
//   - every ConfigMap or Secret referenced by a volume, envFrom or env valueFrom exists in the set
//     (unless marked optional) and, for keyed references, has that key;
//   - monitor intervals are Prometheus durations.
//
// It cannot replace an API server's admission (defaulting, webhooks, quota) and says so nowhere else.
// Output: one "ok <kind>/<name>" line per object on stdout; problems on stderr; exit 1 if any.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

var promDuration = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

type object struct {
	doc  int
	kind string
	name string
	obj  runtime.Object
}

func (o object) id() string { return fmt.Sprintf("%s/%s", o.kind, o.name) }

type checker struct {
	objs     []object
	problems []string
	external map[string]bool // "Secret/name" created outside the manifests
}

func (c *checker) fail(o object, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s (document %d): %s", o.id(), o.doc, fmt.Sprintf(format, args...)))
}

func newDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme,
		batchv1.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	// EnableStrict: unknown and duplicate fields are decoding errors, as `kubectl apply
	// --validate=strict` makes them on a real API server.
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// splitYAML splits a multi-document YAML stream at `---` lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	flush := func() {
		if len(bytes.TrimSpace(cur.Bytes())) > 0 {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimLeft(line, "-")) == "" {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func (c *checker) load(data []byte) {
	dec := newDecoder()
	for i, doc := range splitYAML(data) {
		o := object{doc: i + 1, kind: "?", name: "?"}
		// YAMLToJSONStrict refuses duplicate keys, which a YAML parser otherwise resolves silently.
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			c.fail(o, "not valid YAML: %v", err)
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(js, &meta); err == nil {
			o.kind, o.name = meta.Kind, meta.Metadata.Name
		}
		obj, _, err := dec.Decode(js, nil, nil)
		if err != nil {
			c.fail(o, "does not decode strictly into its API type: %v", err)
			continue
		}
		o.obj = obj
		c.objs = append(c.objs, o)
	}
}

// ------------------------------------------------------------------------------- object checks

func (c *checker) checkMeta(o object, m metav1.ObjectMeta) {
	if m.Name == "" {
		c.fail(o, "metadata.name is empty")
	}
	for _, e := range validation.IsDNS1123Subdomain(m.Name) {
		c.fail(o, "metadata.name %q: %s", m.Name, e)
	}
	if m.Namespace != "" {
		for _, e := range validation.IsDNS1123Label(m.Namespace) {
			c.fail(o, "metadata.namespace %q: %s", m.Namespace, e)
		}
	}
	c.checkLabels(o, "metadata.labels", m.Labels)
	for k := range m.Annotations {
		for _, e := range validation.IsQualifiedName(k) {
			c.fail(o, "annotation key %q: %s", k, e)
		}
	}
}

func (c *checker) checkLabels(o object, where string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			c.fail(o, "%s key %q: %s", where, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			c.fail(o, "%s value %q: %s", where, v, e)
		}
	}
}

func (c *checker) selector(o object, where string, s *metav1.LabelSelector) labels.Selector {
	if s == nil {
		c.fail(o, "%s is missing", where)
		return nil
	}
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		c.fail(o, "%s is empty (it would select everything)", where)
		return nil
	}
	c.checkLabels(o, where+".matchLabels", s.MatchLabels)
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		c.fail(o, "%s: %v", where, err)
		return nil
	}
	return sel
}

func containerPorts(spec corev1.PodSpec) map[string]int32 {
	ports := map[string]int32{}
	for _, ct := range spec.Containers {
		for _, p := range ct.Ports {
			if p.Name != "" {
				ports[p.Name] = p.ContainerPort
			}
		}
	}
	return ports
}

func (c *checker) checkPort(o object, where string, port intstr.IntOrString, named map[string]int32) {
	if port.Type == intstr.String {
		if _, ok := named[port.StrVal]; !ok {
			c.fail(o, "%s refers to port %q, which no container declares", where, port.StrVal)
		}
	} else if port.IntVal < 1 || port.IntVal > 65535 {
		c.fail(o, "%s: port %d out of range", where, port.IntVal)
	}
}

func (c *checker) checkProbe(o object, where string, p *corev1.Probe, named map[string]int32) {
	if p == nil {
		return
	}
	switch {
	case p.HTTPGet != nil:
		c.checkPort(o, where+".httpGet.port", p.HTTPGet.Port, named)
		if !strings.HasPrefix(p.HTTPGet.Path, "/") {
			c.fail(o, "%s.httpGet.path %q must start with /", where, p.HTTPGet.Path)
		}
	case p.TCPSocket != nil:
		c.checkPort(o, where+".tcpSocket.port", p.TCPSocket.Port, named)
	case p.Exec == nil && p.GRPC == nil:
		c.fail(o, "%s has no handler (httpGet, tcpSocket, exec or grpc)", where)
	}
}

func (c *checker) checkPodSpec(o object, spec corev1.PodSpec) {
	if len(spec.Containers) == 0 {
		c.fail(o, "pod template has no containers")
	}
	named := containerPorts(spec)
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	seen := map[string]bool{}
	for _, ct := range all {
		w := "container " + ct.Name
		if ct.Name == "" {
			c.fail(o, "a container has no name")
		}
		for _, e := range validation.IsDNS1123Label(ct.Name) {
			c.fail(o, "%s: name: %s", w, e)
		}
		if seen[ct.Name] {
			c.fail(o, "%s: duplicate container name", w)
		}
		seen[ct.Name] = true
		if ct.Image == "" {
			c.fail(o, "%s has no image", w)
		}
		for _, p := range ct.Ports {
			if p.Name != "" {
				for _, e := range validation.IsValidPortName(p.Name) {
					c.fail(o, "%s: port name %q: %s", w, p.Name, e)
				}
			}
			for _, e := range validation.IsValidPortNum(int(p.ContainerPort)) {
				c.fail(o, "%s: containerPort %d: %s", w, p.ContainerPort, e)
			}
		}
		for _, ev := range ct.Env {
			for _, e := range validation.IsEnvVarName(ev.Name) {
				c.fail(o, "%s: env %q: %s", w, ev.Name, e)
			}
			if ev.ValueFrom != nil {
				if r := ev.ValueFrom.ConfigMapKeyRef; r != nil {
					c.needKey(o, w+" env "+ev.Name, "ConfigMap", r.Name, r.Key, r.Optional)
				}
				if r := ev.ValueFrom.SecretKeyRef; r != nil {
					c.needKey(o, w+" env "+ev.Name, "Secret", r.Name, r.Key, r.Optional)
				}
			}
		}
		for _, ef := range ct.EnvFrom {
			if r := ef.ConfigMapRef; r != nil {
				c.needKey(o, w+" envFrom", "ConfigMap", r.Name, "", r.Optional)
			}
			if r := ef.SecretRef; r != nil {
				c.needKey(o, w+" envFrom", "Secret", r.Name, "", r.Optional)
			}
		}
		for res, req := range ct.Resources.Requests {
			if lim, ok := ct.Resources.Limits[res]; ok && req.Cmp(lim) > 0 {
				c.fail(o, "%s: %s request %s exceeds its limit %s", w, res, req.String(), lim.String())
			}
		}
		if ct.Resources.Requests == nil {
			c.fail(o, "%s has no resource requests", w)
		}
		c.checkProbe(o, w+" livenessProbe", ct.LivenessProbe, named)
		c.checkProbe(o, w+" readinessProbe", ct.ReadinessProbe, named)
		c.checkProbe(o, w+" startupProbe", ct.StartupProbe, named)
		vols := map[string]bool{}
		for _, v := range spec.Volumes {
			vols[v.Name] = true
		}
		for _, vm := range ct.VolumeMounts {
			if !vols[vm.Name] {
				c.fail(o, "%s mounts volume %q, which the pod does not define", w, vm.Name)
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			for _, it := range v.ConfigMap.Items {
				c.needKey(o, "volume "+v.Name, "ConfigMap", v.ConfigMap.Name, it.Key, v.ConfigMap.Optional)
			}
			c.needKey(o, "volume "+v.Name, "ConfigMap", v.ConfigMap.Name, "", v.ConfigMap.Optional)
		}
		if v.Secret != nil {
			for _, it := range v.Secret.Items {
				c.needKey(o, "volume "+v.Name, "Secret", v.Secret.SecretName, it.Key, v.Secret.Optional)
			}
			c.needKey(o, "volume "+v.Name, "Secret", v.Secret.SecretName, "", v.Secret.Optional)
		}
	}
}

// needKey: the ConfigMap/Secret `name` exists in the set and (key != "") has `key`.
func (c *checker) needKey(o object, where, kind, name, key string, optional *bool) {
	if (optional != nil && *optional) || c.external[kind+"/"+name] {
		return
	}
	for _, other := range c.objs {
		switch x := other.obj.(type) {
		case *corev1.ConfigMap:
			if kind == "ConfigMap" && x.Name == name {
				_, a := x.Data[key]
				_, b := x.BinaryData[key]
				if key != "" && !a && !b {
					c.fail(o, "%s: ConfigMap %q has no key %q", where, name, key)
				}
				return
			}
		case *corev1.Secret:
			if kind == "Secret" && x.Name == name {
				_, a := x.Data[key]
				_, b := x.StringData[key]
				if key != "" && !a && !b {
					c.fail(o, "%s: Secret %q has no key %q", where, name, key)
				}
				return
			}
		}
	}
	c.fail(o, "%s refers to %s %q, which is not in this set of manifests", where, kind, name)
}

type podTemplate struct {
	owner  object
	labels labels.Set
	spec   corev1.PodSpec
}

func (c *checker) templates() []podTemplate {
	var out []podTemplate
	for _, o := range c.objs {
		switch x := o.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, podTemplate{o, x.Spec.Template.Labels, x.Spec.Template.Spec})
		case *appsv1.StatefulSet:
			out = append(out, podTemplate{o, x.Spec.Template.Labels, x.Spec.Template.Spec})
		case *appsv1.DaemonSet:
			out = append(out, podTemplate{o, x.Spec.Template.Labels, x.Spec.Template.Spec})
		case *batchv1.Job:
			out = append(out, podTemplate{o, x.Spec.Template.Labels, x.Spec.Template.Spec})
		}
	}
	return out
}

func (c *checker) selected(sel labels.Selector) []podTemplate {
	var out []podTemplate
	if sel == nil {
		return out
	}
	for _, t := range c.templates() {
		if sel.Matches(t.labels) {
			out = append(out, t)
		}
	}
	return out
}

func (c *checker) checkWorkload(o object, sel *metav1.LabelSelector, tmpl corev1.PodTemplateSpec) {
	s := c.selector(o, "spec.selector", sel)
	c.checkLabels(o, "spec.template.metadata.labels", tmpl.Labels)
	if s != nil && !s.Matches(labels.Set(tmpl.Labels)) {
		c.fail(o, "spec.selector %s does not select its own pod template (labels %v)", s, tmpl.Labels)
	}
	c.checkPodSpec(o, tmpl.Spec)
}

func (c *checker) checkServiceMonitor(o object, x *monitoringv1.ServiceMonitor) {
	sel := c.selector(o, "spec.selector", &x.Spec.Selector)
	var svcs []*corev1.Service
	for _, other := range c.objs {
		if s, ok := other.obj.(*corev1.Service); ok && sel != nil && sel.Matches(labels.Set(s.Labels)) {
			svcs = append(svcs, s)
		}
	}
	if sel != nil && len(svcs) == 0 {
		c.fail(o, "spec.selector %s selects no Service of this set (it matches Service labels)", sel)
	}
	if len(x.Spec.Endpoints) == 0 {
		c.fail(o, "spec.endpoints is empty")
	}
	for i, ep := range x.Spec.Endpoints {
		c.checkDuration(o, fmt.Sprintf("spec.endpoints[%d].interval", i), string(ep.Interval))
		c.checkDuration(o, fmt.Sprintf("spec.endpoints[%d].scrapeTimeout", i), string(ep.ScrapeTimeout))
		if ep.Port == "" {
			c.fail(o, "spec.endpoints[%d] names no port", i)
			continue
		}
		for _, s := range svcs {
			found := false
			for _, p := range s.Spec.Ports {
				found = found || p.Name == ep.Port
			}
			if !found {
				c.fail(o, "spec.endpoints[%d].port %q is not a port name of Service %s", i, ep.Port, s.Name)
			}
		}
	}
}

func (c *checker) checkPodMonitor(o object, x *monitoringv1.PodMonitor) {
	sel := c.selector(o, "spec.selector", &x.Spec.Selector)
	pods := c.selected(sel)
	if sel != nil && len(pods) == 0 {
		c.fail(o, "spec.selector %s selects no pod template of this set", sel)
	}
	if len(x.Spec.PodMetricsEndpoints) == 0 {
		c.fail(o, "spec.podMetricsEndpoints is empty")
	}
	for i, ep := range x.Spec.PodMetricsEndpoints {
		c.checkDuration(o, fmt.Sprintf("spec.podMetricsEndpoints[%d].interval", i), string(ep.Interval))
		c.checkDuration(o, fmt.Sprintf("spec.podMetricsEndpoints[%d].scrapeTimeout", i), string(ep.ScrapeTimeout))
		if ep.Port == nil || *ep.Port == "" {
			if ep.PortNumber == nil {
				c.fail(o, "spec.podMetricsEndpoints[%d] names no port", i)
			}
			continue
		}
		for _, t := range pods {
			if _, ok := containerPorts(t.spec)[*ep.Port]; !ok {
				c.fail(o, "spec.podMetricsEndpoints[%d].port %q is not a container port of %s", i, *ep.Port, t.owner.id())
			}
		}
	}
}

func (c *checker) checkDuration(o object, where, d string) {
	if d != "" && !promDuration.MatchString(d) {
		c.fail(o, "%s %q is not a Prometheus duration", where, d)
	}
}

func (c *checker) checkAll() {
	for _, o := range c.objs {
		if m, ok := o.obj.(metav1.ObjectMetaAccessor); ok {
			c.checkMeta(o, *m.GetObjectMeta().(*metav1.ObjectMeta))
		}
		switch x := o.obj.(type) {
		case *appsv1.Deployment:
			c.checkWorkload(o, x.Spec.Selector, x.Spec.Template)
		case *appsv1.StatefulSet:
			c.checkWorkload(o, x.Spec.Selector, x.Spec.Template)
			c.checkGoverningService(o, x.Spec.ServiceName)
		case *appsv1.DaemonSet:
			c.checkWorkload(o, x.Spec.Selector, x.Spec.Template)
		case *batchv1.Job:
			c.checkLabels(o, "spec.template.metadata.labels", x.Spec.Template.Labels)
			c.checkPodSpec(o, x.Spec.Template.Spec)
		case *corev1.Service:
			for _, e := range validation.IsDNS1035Label(x.Name) {
				c.fail(o, "a Service name must be a DNS-1035 label: %s", e)
			}
			sel := labels.SelectorFromSet(x.Spec.Selector)
			if len(x.Spec.Selector) == 0 {
				c.fail(o, "spec.selector is empty")
				continue
			}
			pods := c.selected(sel)
			if len(pods) == 0 {
				c.fail(o, "spec.selector %s selects no pod template of this set", sel)
			}
			for _, p := range x.Spec.Ports {
				if len(x.Spec.Ports) > 1 && p.Name == "" {
					c.fail(o, "port %d needs a name (a Service with several ports)", p.Port)
				}
				for _, t := range pods {
					target := p.TargetPort
					if target.Type == intstr.Int && target.IntVal == 0 {
						target = intstr.FromInt32(p.Port)
					}
					c.checkPort(o, fmt.Sprintf("port %q targetPort (pods of %s)", p.Name, t.owner.id()), target,
						containerPorts(t.spec))
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel := c.selector(o, "spec.selector", x.Spec.Selector)
			if sel != nil && len(c.selected(sel)) == 0 {
				c.fail(o, "spec.selector %s selects no pod template of this set", sel)
			}
			if (x.Spec.MinAvailable == nil) == (x.Spec.MaxUnavailable == nil) {
				c.fail(o, "set exactly one of spec.minAvailable and spec.maxUnavailable")
			}
		case *monitoringv1.ServiceMonitor:
			c.checkServiceMonitor(o, x)
		case *monitoringv1.PodMonitor:
			c.checkPodMonitor(o, x)
		case *monitoringv1.PrometheusRule:
			for _, g := range x.Spec.Groups {
				c.checkDuration(o, "group "+g.Name+" interval", string(ptrOr(g.Interval)))
				for _, r := range g.Rules {
					if r.Expr.String() == "" {
						c.fail(o, "group %s: rule %s%s has no expr", g.Name, r.Alert, r.Record)
					}
					c.checkDuration(o, "rule "+r.Alert+" for", string(ptrOr(r.For)))
				}
			}
		}
	}
}

func ptrOr(d *monitoringv1.Duration) monitoringv1.Duration {
	if d == nil {
		return ""
	}
	return *d
}

func (c *checker) checkGoverningService(o object, name string) {
	if name == "" {
		return // optional since Kubernetes 1.32
	}
	for _, other := range c.objs {
		if s, ok := other.obj.(*corev1.Service); ok && s.Name == name {
			if s.Spec.ClusterIP != corev1.ClusterIPNone {
				c.fail(o, "spec.serviceName %q is not a headless Service (clusterIP: None)", name)
			}
			return
		}
	}
	c.fail(o, "spec.serviceName %q names no Service of this set", name)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var external multi
	flag.Var(&external, "external", "KIND/NAME of a ConfigMap or Secret created outside these manifests (repeatable)")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: k8scheck [-external KIND/NAME]... FILE... (or - for standard input)")
		os.Exit(2)
	}
	var data []byte
	for _, a := range args {
		var b []byte
		var err error
		if a == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(a)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
			os.Exit(2)
		}
		data = append(append(data, b...), []byte("\n---\n")...)
	}
	c := &checker{external: map[string]bool{}}
	for _, e := range external {
		if !strings.HasPrefix(e, "Secret/") && !strings.HasPrefix(e, "ConfigMap/") {
			fmt.Fprintf(os.Stderr, "k8scheck: -external %q must be Secret/NAME or ConfigMap/NAME\n", e)
			os.Exit(2)
		}
		c.external[e] = true
	}
	c.load(data)
	if len(c.objs) == 0 && len(c.problems) == 0 {
		c.problems = append(c.problems, "no objects in the input")
	}
	c.checkAll()
	bad := map[string]bool{}
	sort.Strings(c.problems)
	for _, p := range c.problems {
		fmt.Fprintln(os.Stderr, p)
		bad[strings.SplitN(p, " (document", 2)[0]] = true
	}
	for _, o := range c.objs {
		if !bad[o.id()] {
			fmt.Printf("ok %s\n", o.id())
		}
	}
	if len(c.problems) > 0 {
		fmt.Fprintf(os.Stderr, "k8scheck: %d problem(s) in %d object(s)\n", len(c.problems), len(c.objs))
		os.Exit(1)
	}
}
