package lb_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/tinylb/lb"
)

// A backend reports its load in every response; the balancer reads the
// report, and after the 10 s blackout weighs the backend by it.
func ExampleWithLoadReports() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Endpoint-Load-Metrics", "TEXT cpu_utilization=0.25, rps_fractional=120, eps=0")
		io.WriteString(w, "hello")
	}))
	defer backend.Close()
	be, _ := lb.NewBackend(backend.URL)
	pool, _ := lb.NewPool(be)
	bal := lb.New(pool, lb.SmoothWeighted(), lb.WithLoadReports(lb.LoadReports{StripHeader: true}))
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	resp, err := http.Get(front.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	st := bal.Stats().Backends[0]
	fmt.Printf("header stripped: %v\n", resp.Header.Get("Endpoint-Load-Metrics") == "")
	fmt.Printf("utilization %.2f at %.0f qps; factor %.0f while the blackout lasts\n",
		st.LoadUtilization, st.LoadQPS, st.LoadFactor)
	// Output:
	// header stripped: true
	// utilization 0.25 at 120 qps; factor 1 while the blackout lasts
}
