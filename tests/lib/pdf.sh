# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# make_pdf OUT: for the pdfsig tests (tests/clients, tests/clients-piv).
# A minimal one-page PDF, written by hand (with a correct xref table).
make_pdf() {
        local out=$1 i off
        local objs=(
                "<< /Type /Catalog /Pages 2 0 R >>"
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                "<< /Length 44 >>
stream
BT /F1 24 Tf 20 100 Td (netca test) Tj ET
endstream"
                "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
        )
        local offsets=()
        printf '%%PDF-1.7\n' >"$out"
        for i in "${!objs[@]}"; do
                offsets+=("$(stat -c %s "$out")")
                printf '%d 0 obj\n%s\nendobj\n' "$((i + 1))" "${objs[$i]}" >>"$out"
        done
        local xref
        xref=$(stat -c %s "$out")
        printf 'xref\n0 %d\n0000000000 65535 f \n' "$((${#objs[@]} + 1))" >>"$out"
        for off in "${offsets[@]}"; do
                printf '%010d 00000 n \n' "$off" >>"$out"
        done
        printf 'trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n' "$((${#objs[@]} + 1))" "$xref" >>"$out"
}
