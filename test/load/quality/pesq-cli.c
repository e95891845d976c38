/*
 * pesq-cli: scores a degraded recording against its reference with the
 * ITU-T P.862 reference model. Built by test/load/quality.sh against a
 * P.862 source tree the operator supplies (PESQ_SRC, a folder holding
 * pesq.h, pesqio.h, pesqmain.h, pesqmod.c, pesqdsp.c, dsp.c as in
 * github.com/ludlows/PESQ's pesq/ folder); that source is not part of
 * wagate.
 *
 * Usage: pesq-cli RATE ref.s16 deg.s16   (raw mono signed 16-bit LE)
 * Prints "<raw P.862 score> <P.862.1 MOS-LQO>", narrowband mode.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pesq.h"
#include "pesqio.h"
#include "pesqmain.h"

static float *load(const char *path, long *n) {
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	short *s = malloc(size);
	if (!s || fread(s, 1, size, f) != (size_t)size) {
		perror(path);
		exit(2);
	}
	fclose(f);
	*n = size / 2;
	float *d = malloc(sizeof(float) * (*n));
	for (long i = 0; i < *n; i++)
		d[i] = s[i];
	free(s);
	return d;
}

/* Both signals are scaled by the same peak, as the usual wrappers do: the
   model levels them itself, but its silence threshold assumes that range. */
static void scale(float *a, long na, float *b, long nb) {
	float peak = 1;
	for (long i = 0; i < na; i++)
		peak = fmaxf(peak, fabsf(a[i]));
	for (long i = 0; i < nb; i++)
		peak = fmaxf(peak, fabsf(b[i]));
	for (long i = 0; i < na; i++)
		a[i] /= peak;
	for (long i = 0; i < nb; i++)
		b[i] /= peak;
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: pesq-cli RATE ref.s16 deg.s16\n");
		return 2;
	}
	long rate = atol(argv[1]), flag = 0;
	char *why = "unknown";
	select_rate(rate, &flag, &why);
	if (flag) {
		fprintf(stderr, "pesq-cli: rate %ld: %s\n", rate, why);
		return 2;
	}
	SIGNAL_INFO ref, deg;
	ERROR_INFO info;
	memset(&ref, 0, sizeof ref);
	memset(&deg, 0, sizeof deg);
	memset(&info, 0, sizeof info);
	ref.data = load(argv[2], &ref.Nsamples);
	deg.data = load(argv[3], &deg.Nsamples);
	scale(ref.data, ref.Nsamples, deg.data, deg.Nsamples);
	strcpy(ref.path_name, "ref");
	strcpy(ref.file_name, "ref");
	strcpy(deg.path_name, "deg");
	strcpy(deg.file_name, "deg");
	ref.input_filter = deg.input_filter = 1;
	info.mode = NB_MODE;
	pesq_measure(&ref, &deg, &info, &flag, &why);
	if (flag) {
		fprintf(stderr, "pesq-cli: %s (%ld)\n", why, flag);
		return 1;
	}
	printf("%.3f %.3f\n", info.pesq_mos, info.mapped_mos);
	return 0;
}
