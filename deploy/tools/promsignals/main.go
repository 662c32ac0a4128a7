// promsignals tells, for PromQL expressions, what must return data when the expression is right.
//
//	echo '["sum(rate(x[5m])) > 1", "absent(up == 1)"]' | promsignals
//	-> [{"expr": ..., "signals": ["sum(rate(x[5m]))"], "selectors": ["x", "up"]}, ...]
//
// An alert expression is empty when all is well, so "it returns data" cannot be asked of it directly.
// Instead this program parses it with Prometheus' own parser and returns
//
//   - signals: the expression with its alerting conditions taken away: the operands of every
//     filtering comparison (`>`, `==`, ... without `bool`), both sides of `and` / `or` / `unless`, and
//     the argument of `absent` / `absent_over_time`, so `sum by (source) (rate(x[5m])) / sum by
//     (source) (rate(y[5m])) > 0.01` yields the ratio, which must return data whenever x and y exist
//     and the two `by` clauses agree; a set operator nested in arithmetic (`2 * (a or vector(0))`)
//     contributes its operands as well;
//   - selectors: every vector selector on its own (metric name and matchers), so a misspelt metric
//     or label value inside an `or` fallback or an aggregation is still caught.
//
// Offsets and @ modifiers are removed from both (an `offset 30m` has no data on a fresh Prometheus;
// what is checked is that the series exist). Parts without any selector (`vector(0)`, numbers) are
// not listed. A parse error is reported per expression as "error".
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr      string   `json:"expr"`
	Signals   []string `json:"signals"`
	Selectors []string `json:"selectors"`
	Error     string   `json:"error,omitempty"`
}

func hasSelector(n parser.Node) bool {
	found := false
	parser.Inspect(n, func(node parser.Node, _ []parser.Node) error {
		if _, ok := node.(*parser.VectorSelector); ok {
			found = true
		}
		return nil
	})
	return found
}

func stripOffsets(n parser.Node) {
	parser.Inspect(n, func(node parser.Node, _ []parser.Node) error {
		switch v := node.(type) {
		case *parser.VectorSelector:
			v.OriginalOffset, v.Offset, v.Timestamp, v.StartOrEnd = 0, 0, nil, 0
		case *parser.SubqueryExpr:
			v.OriginalOffset, v.Offset, v.Timestamp, v.StartOrEnd = 0, 0, nil, 0
		}
		return nil
	})
}

func signals(n parser.Node, out *[]string) {
	switch v := n.(type) {
	case *parser.ParenExpr:
		signals(v.Expr, out)
		return
	case *parser.BinaryExpr:
		if v.Op.IsSetOperator() || (v.Op.IsComparisonOperator() && !v.ReturnBool) {
			signals(v.LHS, out)
			signals(v.RHS, out)
			return
		}
	case *parser.Call:
		if v.Func.Name == "absent" || v.Func.Name == "absent_over_time" {
			for _, a := range v.Args {
				signals(a, out)
			}
			return
		}
	}
	if !hasSelector(n) {
		return
	}
	*out = append(*out, n.String())
	// a set operator inside arithmetic or an aggregation (`2 * (a or vector(0))`) can hide an empty
	// operand: its operands are signals too
	parser.Inspect(n, func(node parser.Node, _ []parser.Node) error {
		if b, ok := node.(*parser.BinaryExpr); ok && b != n && b.Op.IsSetOperator() {
			signals(b.LHS, out)
			signals(b.RHS, out)
		}
		return nil
	})
}

func uniq(xs []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintf(os.Stderr, "promsignals: standard input must be a JSON array of strings: %v\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(exprs))
	for _, e := range exprs {
		r := result{Expr: e, Signals: []string{}, Selectors: []string{}}
		node, err := parser.NewParser(parser.Options{}).ParseExpr(e)
		if err != nil {
			r.Error = err.Error()
			results = append(results, r)
			continue
		}
		stripOffsets(node)
		signals(node, &r.Signals)
		parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				r.Selectors = append(r.Selectors, vs.String())
			}
			return nil
		})
		r.Signals, r.Selectors = uniq(r.Signals), uniq(r.Selectors)
		results = append(results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "promsignals: %v\n", err)
		os.Exit(1)
	}
}
