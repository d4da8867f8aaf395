"""Bitstreams written by an earlier Bitlens (model 8, 2026-11-26; models 10 to 13, 2026-11-27; models 14
to 19, 2026-11-29) must keep decoding to the same pixels: any change to the integer kernels, the entropy
decoder, the post-filter or the loop filter that moves one pixel fails here. The files are in tests/data/golden/: crops of the bundled sample photo encoded
at commit 0c73f4c (version 3: one per loop-filter layout, a grayscale one, one without the filter)
and two version-4 streams (clipped filters in layouts 1 and 2) from the commit that introduced them,
then two streams each of models 10 to 19, each decoded with the model it names (models 14 to 16:
`tests.conftest.sample_crop(67, 93)` at quality code 24000 (model 16's at 25000) and
`sample_crop(192, 256)` at 40000 (model 15's at 56000); model 17's at 25000 and 16000, both through
its post-filter on 2x2 blocks; model 18's at 44000 and 56000, through the one above 36000; model 19's at 25000 and 16000).
The integer8 hashes are those of the 8-bit decoder with its 16-bit output layer (2026-11-26), for
models 10 to 13 (the same synthesis) with 8 bits in every layer, rounded by GPTQ (2026-11-27)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codec.devices import pixel_sha256
from codec.engine import decode_bitstream
from codec.entropy.bitstream import Bitstream
from codec.integer import fixedpoint

GOLDEN = Path(__file__).parent / "data" / "golden"

# file: (bitstream version, integer decode sha256, integer8 decode sha256 or None)
STREAMS = {
    "odd-67x93-mid.bln": (3, "f11843b0638107b77ae9dfa54aba275508e71876e3f5886e278858dcb30e0648",
                          "ae2ad29b9e543964751fbe752ccd4d4797c86dae62fc2ecba7c2e40f632e5746"),
    "gray-40x56-low.bln": (3, "2732b9b48b6eb1f51636d32616df27eec412cf4143820319caeb70b80ee2a555", None),
    "192x256-high.bln": (3, "fbcd7c053d0214c90927feb9955f7a537f99dc4dc2460321e0d62e837b328f0c",
                         "2cb8e8fd70655a852ec1af00d661fd6ab473aeda1926f5d16a84f44bfa31338e"),
    "128x160-layout1.bln": (3, "7c779ccb90b5447602f1de7ce4b2bfa6bcf7c05cd950417256eb99e336003d1d", None),
    "v4-192x256-high.bln": (4, "51022b5f644f9faf246a52526300976695348a5a879bea844ed49a80c86e871d",
                            "12b4495fc0c12e142124086c57d058c8ce3781f3d0830a34ab1f7fc6464dbb23"),
    "v4-128x160-mid.bln": (4, "ecbf701d01d092e8e5669ea1c8063f203a64799849741b7295c8548a2e236989", None),
    "odd-67x93-nofilter.bln": (1, "337e0a3f73202a133161592929e5fa7b39e90c08ca0eb96a9642aec9849a607d", None),
    # model 10 (2026-11-27), crops of the sample at quality codes 24000 and 40000
    "v10-odd-67x93-mid.bln": (4, "6a732d1b97f117bcaddef9c9cc46c66168547c3937e69adcbb120d9e1bfb1973",
                              "9f6fc4329129f56943588c52827d5c1124fcc0042135eefdb507525947e07634"),
    "v10-192x256-high.bln": (4, "ef922840bd558302ab5ba76b2bf1a49dfc11ba6bbf9679fa0270f977b46db419",
                             "0be34013926738b32f91b60dcf1d43740c696c4e512bb6f8864488f8cb083d7a"),
    # model 11 (2026-11-27: channel slices of the anchors, five y parts), crops of the sample
    "v11-odd-67x93-mid.bln": (4, "703ec8d207baa50e1911c2180b2b5ab58bda80badeb77b5c5c48258afe0960c5",
                              "e5d61a5d0932fef0e358ae2cf67624894d05a310e0d4e9034b9da74deccfca56"),
    "v11-192x256-high.bln": (4, "e5fd631c5020c270e6acf0b5e13f99345a381058c557ef6e82db8881c7d658f8",
                             "f87708c1b8bccd3fc77d885a61d3b3c3e85d8b71c30327d1b853ab795c0b1970"),
    # model 12 (2026-11-27: channel slices of the non-anchors too, eight y parts), crops of the sample
    "v12-odd-67x93-mid.bln": (4, "a8b65ab73a69dbde4e31462ab9360b4ee438d0bcd073266ab58f61dd3160f500",
                              "adb813cf336bb383819866eb171fb1985436e4eb43f6024b4052592ce8379479"),
    "v12-192x256-high.bln": (4, "247d8eb616a4d17a378a988e37b0a0b04b2a7c112014c58230b5774759aaa51f",
                             "8f61bc0ac1c9c539f965a366f34b17cd9e23af5091ad4942df9a320d3ae5bbe2"),
    # model 13 (2026-11-27: model 12's symbols, latent residual prediction in the reconstruction):
    # the same crops and codes as model 12's, files of the same sizes, other pixels
    "v13-odd-67x93-mid.bln": (4, "d48e3d47124e61ebf784a9d597d3c4318d4a8358dff5296564bbc36766e2e38d",
                              "6f5c2a550aa759e349bd40fe45aafa6872cb2ce83e4f86a2720fdae0f240cd79"),
    "v13-192x256-high.bln": (4, "97131b15cd9ad8a12ac66a3c687a1f1c1b154a9f3d12960255461ac62b725510",
                             "0f0b0efc0170c7d8518e1a8f67504a76b3c7f26d8eb4727f62481b9625707e46"),
    # model 14 (2026-11-29: model 13 plus the learned post-filter before the loop filter): the same
    # crops and codes as model 13's, files of the same sizes, other pixels
    "v14-odd-67x93-mid.bln": (4, "a741a9525378130c108360bf686a62f7b8a00911db118d90cc47bfaf27aa2dd4",
                              "529e6d3a538c3d211784f80feb9d61cf0e614cbe0aaa28bc00b5b56420b3e7e5"),
    "v14-192x256-high.bln": (4, "e15e17ee3f0093010cac3c0bdcff5d6af7ffa9b7456af3c6b1939a9a97d09205",
                             "f777d90a8109ef43d9340f16b0879a5ab9e1567b9778d63f394c46b650e98394"),
    # model 15 (2026-11-29: model 14's post-filter up to quality code 32000, one trained at every
    # rate above): the odd crop at 24000 decodes to model 14's pixels (the same network), the
    # 192x256 crop at 56000 runs the new one (above model 14's highest code)
    "v15-odd-67x93-mid.bln": (4, "a741a9525378130c108360bf686a62f7b8a00911db118d90cc47bfaf27aa2dd4",
                              "529e6d3a538c3d211784f80feb9d61cf0e614cbe0aaa28bc00b5b56420b3e7e5"),
    "v15-192x256-high.bln": (4, "54fd4ec4aad18b31d704a407602bcffa3df3ad58047df6fc6e7f958b294ca9b9",
                             "11524f97d6d825ebb25a8fbb7d2b24acef36d4c4b9128425711b08113ceb9397"),
    # model 16 (2026-11-29: model 15 with the hyper-latent quantized at step 1.25, its integer
    # hyper-synthesis fed 5 x the symbol at scale 2^-2): the crops at 25000 (where the file sends
    # clipped filters; at 24000 it sends none) and 40000
    "v16-odd-67x93-mid.bln": (4, "34df1f3a75fef36f9cf4d5a9e92ef797b34b2a495dd2dceb882cd2dbfe9229cb",
                              "bbd3f071e26a949c3d4807345e963fab5666651082789273ac05e4bedff59f78"),
    "v16-192x256-high.bln": (4, "105aab637246983dc3269301ab79228b484904ad952c913763842cd94fee9e97",
                             "32c30b853d0947df901ea8bf5ad5424f74ca44ba4b49fb24cbc5ef3da3cb348d"),
    # model 17 (2026-11-29: model 16's files, a post-filter on 2x2 pixel blocks up to code 36000)
    "v17-odd-67x93-mid.bln": (4, "e1491836d874b55e38c7527331ef0b8efbd5e5ce04e398cfc0ef9c82c75acba4",
                              "a9c21641e8c23ecde597eb91eb82978e65332729f20ca506d2ac616b52f8ef23"),
    "v17-192x256-low.bln": (4, "1fce3fb4feaec219208ec06621d5138d794364b06ad1e53c5f85fa768514fe76",
                            "7d130dbbd76f10e6888e37b9b6b3c13ab49437efa1cb880f55b5a596daccbe58"),
    # model 18 (2026-11-29: model 17 with a post-filter on 2x2 pixel blocks above code 36000 too)
    "v18-odd-67x93-high.bln": (4, "1b7ea10df93954223f99877805cda705d58e1ba7b0c09f162a5a865ff5d72b4c",
                               "3a471d751de5bf8b25f57ffd400f4afe70aabdd0506c4b4881d832dcf2924bd7"),
    "v18-192x256-high.bln": (4, "4306894533cdce0c2273cd58d7d97b0349ba2d9208c6b3f9173b1133e72ea75d",
                             "73e5a79d001b086ba1035e94f9d7ef9236877c8afafce491563e54da9746e3f5"),
    # model 19 (2026-11-29: model 18 with a 5-layer post-filter on 2x2 blocks up to code 36000)
    "v19-odd-67x93-mid.bln": (4, "96221dcfff8fb846683db232f780442884db7f38523411d995dde89f35991a59",
                              "18cb0131ec0c277ec25f5ab76702536e14f78492b79fb7e104c9a89414bd6302"),
    "v19-192x256-low.bln": (4, "098cfcb4a41e7fe06e3173c40e8832303385f1debeeb82be4440804fc9832edd",
                            "09255951ab3b6b13afecbcfa5c653ab149fe42ae7c8cbfd40bdafaa8ba32097c"),
    # model 20 (2026-11-29: model 19 with a 5-layer post-filter above code 36000, both post-filters'
    # integer weights in two pieces): one crop for each post-filter
    "v20-odd-67x93-mid.bln": (4, "b3fcae640182ce57a4073f9eab41e2c76757f92fa733f23faf951b291a7e2c6e",
                              "13ee9f329e8261d98a486244b8b68c3804eb18821ab9d4692b74bf2bbf22eef3"),
    "v20-192x256-high.bln": (4, "ba7ff878f1a09154111b54396dea0a63c5da8ed38032b0cbf92e84863a9d6a19",
                             "4fee01fcc3087ef90deb7c356703237be4dc85bed1aab8ba86537c3e5a1c19bf"),
    # model 21 (2026-11-29: model 20 with 6-layer post-filters, one-piece integer weights as wide as
    # each output channel allows): one crop for each post-filter
    "v21-odd-67x93-high.bln": (4, "476883b73809aa4eeace0c858a14d00d21713ededd000e26c3c9e5f18149e8ef",
                               "bcc75674a286abed6306774e4955b6849714db969de9604af1257a7f2c61648e"),
    "v21-192x256-low.bln": (4, "180b0058e26189ec879c323aa14548024aa2160dad29cfdb220f0ec732b18bcf",
                            "1f604081d6d5efff929394fa845d6919b9b861a93ee29a42539c0618ea2d3619"),
    # model 22 (2026-11-30: model 21 with a 7-layer post-filter up to code 36000)
    "v22-odd-67x93-mid.bln": (4, "4ed13dc8e24dd43853c12d5073a9588da5ec3924c9abcc5f8fb90f91d20587a4",
                              "1ec20d93f714ca6e001b99f81aa72481b34468f8c6bcfe22780645298886035c"),
    "v22-192x256-low.bln": (4, "f9b32d8b0b4538c964dff1fee9a4c1c0cb4bf2c0acefd498ed50eb6eb0cd99fa",
                            "aef0653eec90d59c814390143e2de80404c09aaca6478dddde855c4c4f8e1805"),
}


@pytest.mark.parametrize("int8_products", [True, False], ids=["int8", "float64"])
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_golden_bitstream_decodes_to_its_recorded_pixels(monkeypatch, name, int8_products):
    monkeypatch.setattr(fixedpoint, "INT8_MATMUL", int8_products)
    data = (GOLDEN / name).read_bytes()
    version, sha, sha8 = STREAMS[name]
    assert Bitstream.unpack(data).version == version
    assert pixel_sha256(decode_bitstream(data).pixels) == sha
    if sha8 is not None:
        assert pixel_sha256(decode_bitstream(data, backend="integer8").pixels) == sha8


def test_golden_set_covers_every_loop_filter_layout_and_clipped_filters():
    layouts = {Bitstream.unpack((GOLDEN / n).read_bytes()).filter_data[0]
               for n in STREAMS if STREAMS[n][0] == 3}
    assert layouts == {0, 1, 2}
    heads = [Bitstream.unpack((GOLDEN / n).read_bytes()).filter_data[0] for n in STREAMS if STREAMS[n][0] == 4]
    assert {1, 2} <= {h & 3 for h in heads} and all(h >> 2 for h in heads)      # clips sent


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_8_bit_decoder_gives_its_recorded_pixels_on_other_instruction_sets_and_one_thread(capability):
    name = "v10-192x256-high.bln"
    script = ("import sys; from codec.devices import pixel_sha256; from codec.engine import decode_bitstream; "
              "print(pixel_sha256(decode_bitstream(open(sys.argv[1], 'rb').read(), backend='integer8').pixels))")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script, str(GOLDEN / name)], env=env, capture_output=True,
                         text=True, cwd=Path(__file__).parents[1], check=True).stdout.split()
    assert out[-1] == STREAMS[name][2]


@pytest.mark.parametrize("env", [{"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
                                 {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}],
                         ids=["sse41", "avx2"])
@pytest.mark.parametrize("name", ["v14-192x256-high.bln", "v15-192x256-high.bln", "v16-192x256-high.bln",
                                  "v17-192x256-low.bln", "v18-192x256-high.bln",
                                  "v19-192x256-low.bln", "v20-192x256-high.bln", "v21-192x256-low.bln",
                                  "v22-192x256-low.bln"])
def test_post_filter_gives_its_recorded_pixels_on_other_instruction_sets_and_one_thread(env, name):
    # the post-filters sum in float32 through oneDNN, whose kernels depend on the instruction set:
    # every partial sum is an integer below 2^24 (model 20: in each weight piece; model 21: in
    # each output channel's own width), so each must give
    # the same pixels
    script = ("import sys; from codec.devices import pixel_sha256; from codec.engine import decode_bitstream; "
              "print(pixel_sha256(decode_bitstream(open(sys.argv[1], 'rb').read()).pixels))")
    out = subprocess.run([sys.executable, "-c", script, str(GOLDEN / name)], env=dict(os.environ, OMP_NUM_THREADS="1", **env),
                         capture_output=True, text=True, cwd=Path(__file__).parents[1], check=True).stdout.split()
    assert out[-1] == STREAMS[name][1]
