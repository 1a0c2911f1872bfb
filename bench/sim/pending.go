package sim

func dynamicLineup(period float64) []Policy { return nil }
func boundedPolicies(c float64) []Policy   { return nil }

func FactorOf(p Policy) float64 { return 0 }
func BinsPolicies() []Policy { return []Policy{Uniform} }
