package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// backend, balancer, front and client is closed by the tests' cleanups,
// and the health checks' connections with them, so whatever is left was
// leaked.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs to its end with -once and shows what it says it shows.
func TestRunOnce(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, "", true))
	got := out.String()
	t.Log("\n" + got)

	before, after, found := strings.Cut(got, "reports NOT_SERVING")
	require.True(t, found, "b is taken out")
	during, back, found := strings.Cut(after, "reports SERVING again")
	require.True(t, found, "b comes back")
	for _, name := range []string{"a", "b", "c"} {
		assert.Contains(t, before, "from "+name+"\n", "before: every backend answers")
		assert.Contains(t, back, "from "+name+"\n", "after: every backend answers")
	}
	assert.Contains(t, during, "from a\n")
	assert.Contains(t, during, "from c\n")
	assert.NotContains(t, during, "from b\n", "b answers nothing while out")
	assert.Regexp(t, `Count\(3\): \["(\w) 1" "(\w) 2" "(\w) 3"\]`, before)
	assert.Contains(t, during, `serving status NOT_SERVING`, "the check's error is shown")
}
