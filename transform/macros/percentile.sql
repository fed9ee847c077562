{#- The continuous percentile of `expression` (an aggregate): `fraction` 0.5 is the median.
    ANSI's ordered-set form by default (PostgreSQL, Snowflake); DuckDB's own quantile_cont. -#}
{% macro percentile(expression, fraction) -%}
    {{ return(adapter.dispatch('percentile', 'kapwork')(expression, fraction)) }}
{%- endmacro %}

{% macro default__percentile(expression, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro duckdb__percentile(expression, fraction) -%}
    quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}
