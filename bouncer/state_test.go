package bouncer_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// TestRulesetWithoutDefault: the server renders a ruleset without a default action as
// "default": ""; the bouncer enforces its rules and lets unmatched packets pass.
func TestRulesetWithoutDefault(t *testing.T) {
	t.Parallel()
	r := render(1)
	r.Default = ""
	rs, err := bouncer.NewRulesetState(r)
	require.NoError(t, err)
	l, err := bouncer.BuildLayout("muninn", -10, 1, (&bouncer.State{}).With(rs), nil)
	require.NoError(t, err)
	last := l.Chains[len(l.Chains)-1].Rules
	require.Equal(t, "return", last[len(last)-1].Verdict, "unmatched packets leave the ruleset's chain")

	r.Rules[0].Action = ""
	_, err = bouncer.NewRulesetState(r)
	require.ErrorContains(t, err, "unsupported action", "a rule needs an action")
}
