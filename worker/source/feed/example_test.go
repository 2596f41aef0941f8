package feed_test

import (
	"fmt"
	"strings"

	"github.com/muninn/muninn/worker/source/feed"
)

func ExampleParse() {
	in := "# my list\n192.0.2.7\n198.51.100.9/24 ; host bits are cleared\n::ffff:203.0.113.1\nbogus\n"
	res, err := feed.Parse("list", feed.Options{}, strings.NewReader(in))
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Prefixes)
	for _, r := range res.Rejected {
		fmt.Printf("line %d: %s\n", r.Line, r.Reason)
	}
	// Output:
	// [192.0.2.7/32 198.51.100.0/24 203.0.113.1/32]
	// line 5: invalid address "bogus"
}
