package geo

import "strings"

// continentMembers lists ISO 3166-1 alpha-2 codes per continent code. The
// base is ipdeny's continent sets (see shared/data/feeds/firehol/ipdeny_country
// headers), completed with the territories ipdeny has no addresses for,
// following GeoNames (which MaxMind's continent field is built from). "EU"
// and "AP" are RIR pseudo-countries for the European Union and Asia/Pacific;
// "AN" as a country is the former Netherlands Antilles, still in whois data.
var continentMembers = map[string]string{
	"AF": "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
	"AN": "AQ BV GS HM TF",
	"AS": "AE AF AM AP AZ BD BH BN BT CC CN GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TM TR TW UZ VN YE",
	"EU": "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES EU FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
	"NA": "AG AI AN AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA PM PR SV SX TC TT US VC VG VI",
	"OC": "AS AU CK CX FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TL TO TV UM VU WF WS",
	"SA": "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
}

var countryContinent = func() map[string]string {
	m := make(map[string]string, 256)
	for cont, members := range continentMembers {
		for _, c := range strings.Fields(members) {
			m[c] = cont
		}
	}
	return m
}()

// ContinentOf returns the continent code (AF, AN, AS, EU, NA, OC, SA) of an
// ISO 3166-1 alpha-2 country code, or "" when unknown. It serves databases
// that carry a country but no continent.
func ContinentOf(country string) string {
	return countryContinent[strings.ToUpper(country)]
}
