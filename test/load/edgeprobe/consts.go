package main

// bsuffix ends the Call-ID of wagate's B-legs (b2bua.bLegCallIDSuffix).
const bsuffix = "@wagate"
