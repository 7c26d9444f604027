"""Analysis of the hw2 experiment: server-log parsing, evidence, plots, answers and the PDF report.

Data flows one way: client results (vllm_cfs.results) and server logs -> study -> plots,
answers, report. `pipeline.analyze` runs it all; hw2/analyze.py is its command line.
"""
