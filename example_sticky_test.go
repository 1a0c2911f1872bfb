package lb_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/tinylb/lb"
)

func ExampleWithStickyCookie() {
	urls, stop := startBackends("a", "b", "c")
	defer stop()
	pool := poolOver(urls)
	bal := lb.New(pool, lb.RoundRobin(), lb.WithStickyCookie(lb.StickyCookie{
		// 32 random bytes in production, the same for every balancer
		// that is to honour the others' cookies.
		Secret:   []byte("0123456789abcdef0123456789abcdef"),
		MaxAge:   8 * time.Hour,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		// Secure: true, behind HTTPS.
	}))
	defer bal.Close()
	front := httptest.NewServer(bal)
	defer front.Close()

	// Each browser keeps the cookie its first answer set, and stays with
	// the backend that gave it.
	browse := func(c *http.Client, n int) string {
		var served []string
		for range n {
			resp, err := c.Get(front.URL)
			if err != nil {
				log.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			served = append(served, string(body))
		}
		return strings.Join(served, " ")
	}
	newBrowser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar}
	}
	alice, bob := newBrowser(), newBrowser()
	fmt.Println("alice:", browse(alice, 4))
	fmt.Println("bob:  ", browse(bob, 4))

	// The cookie names its backend by an HMAC, never by its address.
	resp, err := http.Get(front.URL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	name, rest, _ := strings.Cut(resp.Header.Get("Set-Cookie"), "=")
	value, attrs, _ := strings.Cut(rest, ";")
	fmt.Printf("Set-Cookie: %s=<%d characters>;%s\n", name, len(value), attrs)

	// Alice's backend goes into maintenance: she moves, and stays.
	if err := pool.SetMaintenance(urls[0], true); err != nil {
		log.Fatal(err)
	}
	fmt.Println("alice:", browse(alice, 4))
	fmt.Printf("sticky hits %d, misses %d, rewrites %d\n",
		bal.Stats().StickyHits, bal.Stats().StickyMisses, bal.Stats().StickyRewrites)
	// Output:
	// alice: a a a a
	// bob:   b b b b
	// Set-Cookie: tinylb=<22 characters>; Path=/; Max-Age=28800; HttpOnly; SameSite=Lax
	// alice: c c c c
	// sticky hits 9, misses 1, rewrites 1
}
